//! The Registry page's query: filters, the IP or prefix search, facet
//! counts and one page of rows, computed on the server from the current
//! snapshot, so a registry of 100,000 records costs one pass over the
//! persistent map and sends the browser one page (50 rows by default).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use envid::protocol::{HostRecord, RecordKey};
use ipnet::IpNet;

use super::format::query_pairs;
use crate::store::{RecordDetails, Snapshot};

/// Rows per page by default, and at most.
pub(super) const PER_PAGE: usize = 50;
const MAX_PER_PAGE: usize = 500;
/// Values listed per facet (app, env, idc); the rest are summed.
pub(super) const FACET_VALUES: usize = 12;

/// Static records (the file's) or leased ones (registrations).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Kind {
    #[default]
    Any,
    Static,
    Leased,
}

/// What the search box holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Search {
    /// An address: the records that answer it (its own, and the ranges
    /// holding it).
    Ip(IpAddr),
    /// A prefix: the records inside it.
    Net(IpNet),
    /// The start of a key as written (`10.1.`).
    Text(String),
}

/// The page's filters (the query string), as given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Filter {
    pub(super) app: String,
    pub(super) env: String,
    pub(super) env_type: String,
    pub(super) idc: String,
    pub(super) kind: Kind,
    /// `team=pay`, or `team` for any value.
    pub(super) label: String,
    /// The search box.
    pub(super) q: String,
    /// 1-based.
    pub(super) page: usize,
    pub(super) per: usize,
}

impl Filter {
    /// The filter of a query string; unknown or bad values are ignored
    /// (a console link never fails).
    pub(super) fn parse(query: Option<&str>) -> Filter {
        let mut f = Filter {
            page: 1,
            per: PER_PAGE,
            ..Filter::default()
        };
        for (k, v) in query_pairs(query.unwrap_or("")) {
            let v = v.trim().to_string();
            match k.as_str() {
                "app" => f.app = v,
                "env" => f.env = v,
                "env_type" => f.env_type = v,
                "idc" => f.idc = v,
                "label" => f.label = v,
                "q" => f.q = v,
                "kind" => {
                    f.kind = match v.as_str() {
                        "static" => Kind::Static,
                        "leased" => Kind::Leased,
                        _ => Kind::Any,
                    }
                }
                "page" => f.page = v.parse().unwrap_or(1).max(1),
                "per" => f.per = v.parse().unwrap_or(PER_PAGE).clamp(1, MAX_PER_PAGE),
                _ => {}
            }
        }
        f
    }

    fn search(&self) -> Option<Search> {
        let q = self.q.trim();
        if q.is_empty() {
            return None;
        }
        Some(if let Ok(ip) = q.parse::<IpAddr>() {
            Search::Ip(ip.to_canonical())
        } else if let Ok(net) = q.parse::<IpNet>() {
            Search::Net(net.trunc())
        } else {
            Search::Text(q.to_string())
        })
    }

    /// Whether any filter is set (the page says "of N").
    pub(super) fn is_filtered(&self) -> bool {
        !(self.app.is_empty()
            && self.env.is_empty()
            && self.env_type.is_empty()
            && self.idc.is_empty()
            && self.label.is_empty()
            && self.q.trim().is_empty()
            && self.kind == Kind::Any)
    }
}

/// One row of the table.
#[derive(Debug)]
pub(super) struct Row {
    pub(super) key: RecordKey,
    pub(super) record: Arc<HostRecord>,
    pub(super) leased: bool,
    pub(super) details: Option<RecordDetails>,
}

/// What the Registry page shows.
#[derive(Debug, Default)]
pub(super) struct Page {
    /// Records served, and how many are registrations.
    pub(super) total: usize,
    pub(super) leased_total: usize,
    /// Records matching the filter.
    pub(super) matching: usize,
    /// Per app, env and idc among the matching, largest first (at most
    /// [`FACET_VALUES`] each), and the number of distinct values.
    pub(super) apps: (Vec<(String, usize)>, usize),
    pub(super) envs: (Vec<(String, usize)>, usize),
    pub(super) idcs: (Vec<(String, usize)>, usize),
    pub(super) rows: Vec<Row>,
    /// The page shown (clamped to the last) and the number of pages.
    pub(super) page: usize,
    pub(super) pages: usize,
}

fn matches_search(search: &Search, key: &RecordKey, text: &mut String) -> bool {
    match (search, key) {
        (Search::Ip(ip), RecordKey::Ip(k)) => k == ip,
        (Search::Ip(ip), RecordKey::Net(n)) => n.contains(ip),
        (Search::Net(net), RecordKey::Ip(k)) => net.contains(k),
        (Search::Net(net), RecordKey::Net(n)) => net.contains(n),
        (Search::Text(t), k) => {
            use std::fmt::Write;
            text.clear();
            let _ = write!(text, "{k}");
            text.starts_with(t.as_str())
        }
    }
}

fn matches_label(label: &str, record: &HostRecord) -> bool {
    match label.split_once('=') {
        Some((k, v)) => record.labels.get(k.trim()).map(String::as_str) == Some(v.trim()),
        None => record.labels.contains_key(label),
    }
}

fn top(counts: HashMap<&str, usize>) -> (Vec<(String, usize)>, usize) {
    let distinct = counts.len();
    let mut v: Vec<(&str, usize)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v.truncate(FACET_VALUES);
    (
        v.into_iter().map(|(k, n)| (k.to_string(), n)).collect(),
        distinct,
    )
}

/// The page of `snapshot` that `filter` asks for. `registered` is the set
/// of IPs whose served record is a registration; `details` fetches the
/// times and leases of the shown rows (one lock, a page of keys).
pub(super) fn query(
    snapshot: &Snapshot,
    registered: &HashSet<IpAddr>,
    filter: &Filter,
    details: impl FnOnce(&[RecordKey]) -> Vec<Option<RecordDetails>>,
) -> Page {
    let search = filter.search();
    let first = (filter.page - 1).saturating_mul(filter.per);
    let mut apps: HashMap<&str, usize> = HashMap::new();
    let mut envs: HashMap<&str, usize> = HashMap::new();
    let mut idcs: HashMap<&str, usize> = HashMap::new();
    let mut matching = 0;
    let mut picked: Vec<(RecordKey, Arc<HostRecord>, bool)> = Vec::with_capacity(filter.per);
    // The last full page, for a page number past the end.
    let mut tail: std::collections::VecDeque<(RecordKey, Arc<HostRecord>, bool)> =
        std::collections::VecDeque::new();
    let mut text = String::new();
    for (key, record) in snapshot.records.iter() {
        let leased = matches!(key, RecordKey::Ip(ip) if registered.contains(ip));
        let keep = match filter.kind {
            Kind::Any => true,
            Kind::Static => !leased,
            Kind::Leased => leased,
        } && (filter.app.is_empty()
            || record.app.as_deref() == Some(filter.app.as_str()))
            && (filter.env.is_empty() || record.env == filter.env)
            && (filter.idc.is_empty() || record.idc == filter.idc)
            && (filter.env_type.is_empty()
                || record.env_type.as_ref().map(|t| t.as_str()) == Some(filter.env_type.as_str()))
            && (filter.label.is_empty() || matches_label(&filter.label, record))
            && search
                .as_ref()
                .is_none_or(|s| matches_search(s, key, &mut text));
        if !keep {
            continue;
        }
        *apps.entry(record.app.as_deref().unwrap_or("")).or_default() += 1;
        *envs.entry(record.env.as_str()).or_default() += 1;
        *idcs.entry(record.idc.as_str()).or_default() += 1;
        if matching >= first && picked.len() < filter.per {
            picked.push((*key, record.clone(), leased));
        } else if picked.is_empty() {
            // Matching rows before the asked page: kept as a rolling last
            // page in case the asked page is past the end.
            if matching % filter.per == 0 {
                tail.clear();
            }
            tail.push_back((*key, record.clone(), leased));
        }
        matching += 1;
    }
    let pages = matching.div_ceil(filter.per).max(1);
    let page = if picked.is_empty() && matching > 0 {
        picked = tail.into_iter().collect();
        pages
    } else {
        filter.page.min(pages)
    };
    let keys: Vec<RecordKey> = picked.iter().map(|(k, _, _)| *k).collect();
    let details = details(&keys);
    Page {
        total: snapshot.records.len(),
        leased_total: registered.len(),
        matching,
        apps: top(apps),
        envs: top(envs),
        idcs: top(idcs),
        rows: picked
            .into_iter()
            .zip(details)
            .map(|((key, record, leased), details)| Row {
                key,
                record,
                leased,
                details,
            })
            .collect(),
        page,
        pages,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Records;

    fn records() -> (Records, HashSet<IpAddr>) {
        let text = r#"
[[records]]
ip = "10.0.0.1"
app = "pay"
env = "prod"
idc = "cn5"
labels = { team = "pay" }
[[records]]
ip = "10.0.0.2"
app = "shop"
env = "beta"
idc = "cn0"
[[records]]
cidr = "10.1.0.0/16"
env = "prod"
idc = "cn5"
"#;
        let statics =
            crate::registry_file::parse_registry(text, std::path::Path::new("t.toml")).unwrap();
        let records = Records::new(statics, 10);
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let mut leased = crate::registry_file::parse_registry(
            "[[records]]\nip = \"10.1.2.3\"\napp = \"pay\"\nenv = \"prod\"\nidc = \"cn6\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        records.register(ip, leased.remove(0), 60, 1_000);
        let registered = records.registered_ips();
        (records, registered)
    }

    fn run(query: &str) -> Page {
        let (records, registered) = records();
        let f = Filter::parse(Some(query));
        query_page(&records, &registered, &f)
    }

    fn query_page(records: &Records, registered: &HashSet<IpAddr>, f: &Filter) -> Page {
        super::query(&records.snapshot(), registered, f, |k| records.details(k))
    }

    fn keys(p: &Page) -> Vec<String> {
        p.rows.iter().map(|r| r.key.to_string()).collect()
    }

    #[test]
    fn filters_search_and_facets() {
        let all = run("");
        assert_eq!((all.total, all.matching, all.leased_total), (4, 4, 1));
        assert_eq!(all.envs.0[0], ("prod".to_string(), 3));
        assert_eq!(keys(&run("app=pay")), ["10.0.0.1", "10.1.2.3"]);
        assert_eq!(keys(&run("kind=leased")), ["10.1.2.3"]);
        assert_eq!(
            keys(&run("kind=static&env=prod")),
            ["10.0.0.1", "10.1.0.0/16"]
        );
        assert_eq!(keys(&run("label=team%3Dpay")), ["10.0.0.1"]);
        assert_eq!(keys(&run("label=team")), ["10.0.0.1"]);
        assert_eq!(keys(&run("env_type=beta")), ["10.0.0.2"]);
        assert_eq!(keys(&run("idc=cn6")), ["10.1.2.3"]);
        // An IP: its own record and the ranges holding it.
        // (Addresses sort before ranges.)
        assert_eq!(keys(&run("q=10.1.2.3")), ["10.1.2.3", "10.1.0.0/16"]);
        // A prefix: what is inside it.
        assert_eq!(keys(&run("q=10.0.0.0%2F24")), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(keys(&run("q=10.1.")), ["10.1.2.3", "10.1.0.0/16"]);
        let leased = &run("kind=leased").rows[0];
        let d = leased.details.as_ref().unwrap();
        assert_eq!(d.lease.as_ref().unwrap().expires_unix_ms, Some(61_000));
        assert_eq!(d.lease.as_ref().unwrap().registered_unix_ms, Some(1_000));
        assert!(run("app=pay").rows[0]
            .details
            .as_ref()
            .unwrap()
            .lease
            .is_none());
    }

    #[test]
    fn pages() {
        let p = run("per=3");
        assert_eq!((p.page, p.pages, p.rows.len()), (1, 2, 3));
        let p = run("per=3&page=2");
        assert_eq!(keys(&p), ["10.1.0.0/16"]);
        // Past the end: the last page.
        let p = run("per=3&page=9");
        assert_eq!((p.page, keys(&p)), (2, vec!["10.1.0.0/16".to_string()]));
        let p = run("per=2&page=9");
        assert_eq!((p.page, keys(&p).len()), (2, 2));
        let p = run("app=nobody&page=3");
        assert_eq!((p.page, p.pages, p.matching), (1, 1, 0));
    }
}
