//! The console's pages, written with maud: every `(value)` in a template
//! is HTML-escaped, so a record's label holding `<script>` is shown as
//! text; nothing here writes raw HTML from data (no `PreEscaped`). No
//! inline script or style: the CSP forbids both, and the page's look and
//! its one script come from `/ui/assets/`.

use maud::{html, Markup, DOCTYPE};

use super::format::{duration, encode, rfc3339, time};
use super::registry::{Filter, Kind, Page};
use crate::http::status::{ChangeView, ChangesView, StatusView};
use crate::recent::RefusalView;
use crate::store::now_unix_ms;

/// The pages, for the navigation bar.
const NAV: [(&str, &str); 4] = [
    ("registry", "Registry"),
    ("changes", "Changes"),
    ("refusals", "Refusals"),
    ("health", "Health"),
];

/// What the banner says on every page.
pub(super) struct Banner<'a> {
    pub(super) status: &'a str,
    pub(super) version: u64,
    pub(super) history: &'a str,
    pub(super) records: usize,
}

/// A time: UTC as text, machine-readable for the script (local time, "ago").
fn at(unix_ms: u64) -> Markup {
    html! { time datetime=(rfc3339(unix_ms)) { (time(unix_ms)) } }
}

fn page(title: &str, active: &str, banner: Option<&Banner<'_>>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="same-origin";
                title { (title) " · envid console" }
                link rel="stylesheet" href="/ui/assets/console.css";
                link rel="icon" href="/ui/assets/favicon.svg" type="image/svg+xml";
                script src="/ui/assets/console.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/ui/" { "envid" }
                    nav {
                        @for (path, name) in NAV {
                            a href={ "/ui/" (path) } class=[(path == active).then_some("active")] { (name) }
                        }
                    }
                    @if let Some(b) = banner {
                        div.banner {
                            span class={ "badge " (b.status) } { (b.status) }
                            span { "version " strong { (b.version) } }
                            @if !b.history.is_empty() {
                                span { "history " code { (b.history) } }
                            }
                            span { strong { (b.records) } " records" }
                        }
                    }
                }
                main { (body) }
                footer { "envid " (env!("CARGO_PKG_VERSION")) " · read-only console · " a href="/v1/status" { "JSON" } }
            }
        }
    }
}

/// The token prompt: the only thing shown without a session when a read
/// token is set.
pub(super) fn login(next: &str, problem: Option<&str>) -> Markup {
    page(
        "Sign in",
        "",
        None,
        html! {
            section.login {
                h1 { "This service needs its read token" }
                p { "The console shows what " code { "GET /v1/registry" } " shows; it asks for the same token (" code { "--token" } "). The token is checked once and not kept: the browser gets a session cookie of its own, valid for 12 hours or until the service restarts." }
                @if let Some(p) = problem {
                    p.error role="alert" { (p) }
                }
                form method="post" action="/ui/login" {
                    input type="hidden" name="next" value=(next);
                    label for="token" { "Read token" }
                    input #token type="password" name="token" autocomplete="off" required autofocus;
                    button type="submit" { "Open the console" }
                }
            }
        },
    )
}

/// A link to the registry with `filter` changed by `set`.
fn registry_link(filter: &Filter, set: &[(&str, &str)]) -> String {
    let kind = match filter.kind {
        Kind::Any => "",
        Kind::Static => "static",
        Kind::Leased => "leased",
    };
    let page = filter.page.to_string();
    let per = filter.per.to_string();
    let mut pairs: Vec<(&str, &str)> = vec![
        ("app", &filter.app),
        ("env", &filter.env),
        ("env_type", &filter.env_type),
        ("idc", &filter.idc),
        ("kind", kind),
        ("label", &filter.label),
        ("q", &filter.q),
        ("page", &page),
        ("per", &per),
    ];
    for (k, v) in set {
        match pairs.iter_mut().find(|(name, _)| name == k) {
            Some(p) => p.1 = v,
            None => pairs.push((k, v)),
        }
    }
    if !set.iter().any(|(k, _)| *k == "page") {
        pairs.retain(|(k, _)| *k != "page");
    }
    let query: Vec<String> = pairs
        .iter()
        .filter(|(k, v)| !v.is_empty() && (*k, *v) != ("per", "50") && (*k, *v) != ("page", "1"))
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    if query.is_empty() {
        "/ui/registry".into()
    } else {
        format!("/ui/registry?{}", query.join("&"))
    }
}

fn facet(
    title: &str,
    name: &str,
    values: &(Vec<(String, usize)>, usize),
    filter: &Filter,
    matching: usize,
) -> Markup {
    html! {
        div.facet {
            h3 { (title) " " span.muted { "(" (values.1) ")" } }
            table.counts {
                @for (value, n) in &values.0 {
                    tr {
                        td {
                            a href=(registry_link(filter, &[(name, value)])) {
                                @if value.is_empty() { em { "none" } } @else { (value) }
                            }
                        }
                        td.num { (n) }
                        td { meter min="0" max=(matching.max(1)) value=(n) {} }
                    }
                }
            }
            @if values.1 > values.0.len() {
                p.muted { "and " (values.1 - values.0.len()) " more" }
            }
        }
    }
}

/// The Registry page.
pub(super) fn registry(banner: &Banner<'_>, filter: &Filter, p: &Page, now_ms: u64) -> Markup {
    let kind = filter.kind;
    page(
        "Registry",
        "registry",
        Some(banner),
        html! {
            h1 { "Registry" }
            p.summary {
                strong #matching { (p.matching) } " matching"
                @if filter.is_filtered() { " of " (p.total) } " records · "
                (p.total - p.leased_total) " static · " (p.leased_total) " leased"
            }
            form.filters method="get" action="/ui/registry" {
                label { "Search IP or prefix" input type="search" name="q" value=(filter.q) placeholder="10.1.2.3, 10.1.0.0/16 or 10.1."; }
                label { "app" input name="app" value=(filter.app); }
                label { "env" input name="env" value=(filter.env); }
                label { "env_type" input name="env_type" value=(filter.env_type); }
                label { "idc" input name="idc" value=(filter.idc); }
                label { "label" input name="label" value=(filter.label) placeholder="team=pay"; }
                label { "kind"
                    select name="kind" {
                        option value="" selected[kind == Kind::Any] { "any" }
                        option value="static" selected[kind == Kind::Static] { "static" }
                        option value="leased" selected[kind == Kind::Leased] { "leased" }
                    }
                }
                div.buttons {
                    button type="submit" { "Filter" }
                    a href="/ui/registry" { "Clear" }
                }
            }
            div.facets {
                (facet("app", "app", &p.apps, filter, p.matching))
                (facet("env", "env", &p.envs, filter, p.matching))
                (facet("idc", "idc", &p.idcs, filter, p.matching))
            }
            (pager(filter, p))
            table.records #records {
                thead { tr {
                    th { "IP / range" } th { "app" } th { "env" } th { "idc" } th { "kind" }
                    th { "labels" } th { "release" } th { "registered" } th { "last change" }
                    th { "lease ends" } th { "owner" }
                } }
                tbody {
                    @for row in &p.rows {
                        @let r = &row.record;
                        tr {
                            td { code.key { (row.key) } }
                            td { (r.app.as_deref().unwrap_or("–")) }
                            td {
                                (r.env)
                                @if let Some(t) = &r.env_type { @if t.as_str() != r.env { " " span.muted { "(" (t.as_str()) ")" } } }
                                @if let Some(s) = &r.sub_env { br; span.muted { (s) } }
                            }
                            td { (r.idc) }
                            td { @if row.leased { span.tag.leased { "leased" } } @else { span.tag.static { "static" } } }
                            td.labels {
                                @for (k, v) in &r.labels {
                                    @let pair = format!("{k}={v}");
                                    a.chip href=(registry_link(filter, &[("label", &pair), ("page", "1")])) { (pair) }
                                }
                            }
                            td.release {
                                @if let Some(rel) = &r.release {
                                    @if let Some(v) = &rel.version { span { (v) } }
                                    @if let Some(id) = &rel.id { br; span.muted { (id) } }
                                    @if let Some(b) = rel.batch { br; span.muted { "batch " (b) } }
                                    @if let Some(d) = &rel.deployed_at { br; span.muted { (d) } }
                                }
                            }
                            @match &row.details {
                                Some(d) => {
                                    td { (at(d.lease.as_ref().and_then(|l| l.registered_unix_ms).unwrap_or(d.since_unix_ms))) }
                                    td { (at(d.changed_unix_ms)) }
                                    td {
                                        @if let Some(l) = &d.lease {
                                            @match l.expires_unix_ms {
                                                Some(e) if e > now_ms => { (at(e)) br; span.muted { "in " (duration(e - now_ms)) ", lease " (l.lease_seconds) " s" } }
                                                Some(e) => { (at(e)) br; span.warn { "overdue " (duration(now_ms - e)) } }
                                                None => { span.muted { "etcd lease" } }
                                            }
                                        } @else { span.muted { "–" } }
                                    }
                                }
                                None => { td {} td {} td {} }
                            }
                            td {
                                @if row.leased { (r.app.as_deref().unwrap_or("–")) } @else { span.muted { "registry file" } }
                            }
                        }
                    }
                }
            }
            @if p.rows.is_empty() { p.empty { "No record matches." } }
            (pager(filter, p))
        },
    )
}

fn pager(filter: &Filter, p: &Page) -> Markup {
    let prev = (p.page - 1).to_string();
    let next = (p.page + 1).to_string();
    let last = p.pages.to_string();
    html! {
        nav.pager {
            @if p.page > 1 {
                a href=(registry_link(filter, &[("page", "1")])) { "« first" }
                a href=(registry_link(filter, &[("page", &prev)])) rel="prev" { "‹ previous" }
            }
            span { "page " strong { (p.page) } " of " (p.pages) }
            @if p.page < p.pages {
                a href=(registry_link(filter, &[("page", &next)])) rel="next" { "next ›" }
                a href=(registry_link(filter, &[("page", &last)])) { "last »" }
            }
        }
    }
}

fn change_row(c: &ChangeView) -> Markup {
    html! {
        tr {
            td.num { (c.version) }
            td { (at(c.at_unix_ms)) }
            td.num { @if c.joins > 0 { span.join { "+" (c.joins) } } }
            td.num { @if c.changes > 0 { span.change { "~" (c.changes) } } }
            td.num { @if c.leaves > 0 { span.leave { "−" (c.leaves) } } }
            td.what {
                @for r in &c.joined {
                    div.join { "joined " code { (r.key) } " " (r.app.as_deref().unwrap_or("–")) " " (r.env) " " (r.idc) }
                }
                @for r in &c.changed {
                    div.change { "changed " code { (r.key) } " " (r.app.as_deref().unwrap_or("–")) " " (r.env) " " (r.idc) }
                }
                @for k in &c.left {
                    div.leave { "left " code { (k) } }
                }
                @if c.truncated { div.muted { "(lists cut at 100 each; the counts are whole)" } }
            }
        }
    }
}

/// The Changes page.
pub(super) fn changes(banner: &Banner<'_>, v: &ChangesView) -> Markup {
    page(
        "Changes",
        "changes",
        Some(banner),
        html! {
            h1 { "Changes" }
            p.summary { "The registry's recent joins, leaves and changes, newest first, as kept for replication deltas (the store's history). Now at version " strong { (v.version) } "." }
            @if v.changes.is_empty() {
                p.empty { "No change since the service started." }
            } @else {
                table.changes #changes {
                    thead { tr { th { "version" } th { "time" } th { "joins" } th { "changes" } th { "leaves" } th { "what" } } }
                    tbody { @for c in &v.changes { (change_row(c)) } }
                }
            }
        },
    )
}

/// The Refusals page.
pub(super) fn refusals(banner: &Banner<'_>, v: &RefusalView) -> Markup {
    let max = v.counts.values().copied().max().unwrap_or(1);
    page(
        "Refusals",
        "refusals",
        Some(banner),
        html! {
            h1 { "Refusals" }
            p.summary { strong #refusal-total { (v.total) } " registration requests refused since the service started. The app is the one the token named; tokens are never kept." }
            @if !v.counts.is_empty() {
                h2 { "By reason" }
                table.counts #reasons {
                    @for (reason, n) in &v.counts {
                        tr { td { code { (reason) } } td.num { (n) } td { meter min="0" max=(max) value=(n) {} } }
                    }
                }
            }
            h2 { "Most recent" }
            @if v.refusals.is_empty() {
                p.empty { "None." }
            } @else {
                table.refusals #refusals {
                    thead { tr { th { "time" } th { "op" } th { "peer" } th { "client" } th { "app" } th { "IP" } th { "reason" } th { "answer" } } }
                    tbody {
                        @for r in &v.refusals {
                            tr {
                                td { (at(r.at_unix_ms)) }
                                td { (r.op) }
                                td { code { (r.peer) } }
                                td { @if let Some(c) = r.client { code { (c) } } }
                                td { (r.app.as_deref().unwrap_or("–")) }
                                td { @if let Some(ip) = r.ip { code { (ip) } } }
                                td { span.tag.refused { (r.reason) } }
                                td.message { (r.message) }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The Health page.
pub(super) fn health(banner: &Banner<'_>, s: &StatusView, now_ms: u64) -> Markup {
    let p = &s.protection;
    page(
        "Health",
        "health",
        Some(banner),
        html! {
            h1 { "Health" }
            div.cards {
                section.card #service {
                    h2 { "Service" }
                    dl {
                        dt { "status" } dd { span class={ "badge " (s.status) } { (s.status) } @if let Some(r) = &s.reason { " " (r) } }
                        dt { "registry version" } dd { (s.version) }
                        dt { "history" } dd { code { (s.history) } }
                        dt { "records" } dd { (s.records) " (" (s.static_records) " static, " (s.registrations) " registrations)" }
                        dt { "registration" } dd { (s.registration) }
                        dt { "envid" } dd { (s.service_version) }
                        dt { "started" } dd { (at(s.started_unix_ms)) ", up " (duration(now_ms.saturating_sub(s.started_unix_ms))) }
                    }
                }
                section.card #store {
                    h2 { "Store: " (s.store.kind) }
                    dl {
                        @if let Some(persistent) = s.store.persistent {
                            dt { "registrations" } dd { @if persistent { "kept in the state file" } @else { "in memory only (no --state)" } }
                        }
                        @if !s.store.members.is_empty() {
                            dt { "members" }
                            dd {
                                table.members {
                                    @for m in &s.store.members {
                                        tr {
                                            td { code { (m.endpoint) } }
                                            td { @match m.reachable {
                                                Some(true) => span.badge.ok { "reachable" },
                                                Some(false) => span.badge.stale { "unreachable" },
                                                None => span.muted { "not checked yet" },
                                            } }
                                        }
                                    }
                                }
                            }
                        }
                        @if let Some(lag) = s.store.watch_lag {
                            dt { "watch lag" } dd { (lag) " revisions" }
                        }
                        dt { "last error" }
                        dd {
                            @match &s.store.last_error {
                                Some(e) => { span.warn { (e.message) } @if let Some(t) = e.at_unix_ms { br; (at(t)) } }
                                None => span.muted { "none" },
                            }
                        }
                    }
                }
                section.card #protection {
                    h2 { "Protection" }
                    dl {
                        dt { "reload protection" }
                        dd {
                            @match &p.reload_refused {
                                Some(r) => {
                                    span.badge.protected { "protected" } " since " (at(r.since_unix_ms))
                                    p.warn { (r.message) }
                                    p { "would delete " strong { (r.would_delete) } " of " (r.static_records) " static records" }
                                }
                                None => {
                                    @if p.mass_delete_allowed { span.badge.stale { "off" } " (--allow-mass-delete)" } @else { span.badge.ok { "armed" } " no reload refused" }
                                }
                            }
                        }
                        dt { "lease self-preservation" }
                        dd {
                            @match &p.lease_self_preservation {
                                Some(l) => { span.badge.protected { "holding" } " " (l.held) " of " (l.live) " leases since " (at(l.since_unix_ms)) }
                                None => {
                                    @if p.lease_preservation_enabled { span.badge.ok { "armed" } " leases expire normally" } @else { span.badge.stale { "off" } " (--no-lease-preservation)" }
                                }
                            }
                        }
                    }
                }
                section.card #reload {
                    h2 { "Last reload" }
                    @match &s.last_reload {
                        Some(r) => {
                            dl {
                                dt { "result" } dd { span class={ "badge " (r.result) } { (r.result) } }
                                dt { "when" } dd { (at(r.at_unix_ms)) }
                                @if let Some(v) = r.version { dt { "version" } dd { (v) } }
                                dt { "why" } dd.message { (r.message) }
                            }
                        }
                        None => p.muted { "No reload since the service started (the file has not changed)." },
                    }
                }
                section.card #keys {
                    h2 { "Identity keys" }
                    @if s.keys.is_empty() {
                        p.muted { "No signing key: no identities are issued (" code { "--signing-key" } ")." }
                    } @else {
                        table {
                            thead { tr { th { "kid" } th { "use" } } }
                            tbody {
                                @for k in &s.keys {
                                    tr { td { code { (k.kid) } } td { @if k.signing { span.badge.ok { "signs" } } @else { "verifies only" } } }
                                }
                            }
                        }
                        p.muted { "Identities live " (duration(s.identity_lifetime_seconds * 1000)) "." }
                    }
                }
            }
        },
    )
}

/// The current time, for the pages' "in 5 min" and "overdue".
pub(super) fn now() -> u64 {
    now_unix_ms()
}
