//! The level-triggered core: what the served view says against the set a
//! consumer believes joined, as joins, leaves and changes, in IP order.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use super::filter::Filter;
use super::EventKind;
use crate::protocol::{HostRecord, RecordKey};
use crate::replica::follow::Changed;
use crate::replica::ReplicaView;

/// One IP whose standing under the filter moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Transition {
    pub(crate) kind: EventKind,
    pub(crate) ip: IpAddr,
    /// The new record, or the last known one for a leave.
    pub(crate) record: Arc<HostRecord>,
    /// For a change: the record before.
    pub(crate) previous: Option<Arc<HostRecord>>,
}

/// Whether a record for the same IP is another host as far as a consumer
/// can tell: another registration, or another app, environment or data
/// center. Anything else (labels, release, a renewal) is the same host.
fn moved(a: &HostRecord, b: &HostRecord) -> bool {
    a.registration != b.registration || a.app != b.app || a.env != b.env || a.idc != b.idc
}

/// The transitions that take `joined` to what `view` holds under `filter`,
/// looking only at the IPs `changed` names; sorted by IP, so one input
/// always gives one sequence (and one set of event ids).
pub(crate) fn diff(
    joined: &HashMap<IpAddr, Arc<HostRecord>>,
    view: &ReplicaView,
    changed: &Changed,
    filter: &Filter,
) -> Vec<Transition> {
    let ips: BTreeSet<IpAddr> = match changed {
        Changed::Keys(keys) => keys
            .iter()
            .filter_map(|k| match k {
                RecordKey::Ip(ip) => Some(*ip),
                RecordKey::Net(_) => None,
            })
            .collect(),
        Changed::All => joined
            .keys()
            .copied()
            .chain(
                view.records()
                    .filter(|r| filter.matches(r))
                    .filter_map(|r| r.ip),
            )
            .collect(),
    };
    let mut out = Vec::new();
    for ip in ips {
        let now = view.get(&RecordKey::Ip(ip)).filter(|r| filter.matches(r));
        match (joined.get(&ip), now) {
            (None, Some(n)) => out.push(Transition {
                kind: EventKind::Join,
                ip,
                record: n.clone(),
                previous: None,
            }),
            (Some(p), None) => out.push(Transition {
                kind: EventKind::Leave,
                ip,
                record: p.clone(),
                previous: None,
            }),
            (Some(p), Some(n)) if moved(p, n) => out.push(Transition {
                kind: EventKind::Change,
                ip,
                record: n.clone(),
                previous: Some(p.clone()),
            }),
            _ => {}
        }
    }
    out
}

/// `joined` after `t`.
pub(crate) fn apply(joined: &mut HashMap<IpAddr, Arc<HostRecord>>, t: &Transition) {
    match t.kind {
        EventKind::Join | EventKind::Change => {
            joined.insert(t.ip, t.record.clone());
        }
        EventKind::Leave => {
            joined.remove(&t.ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ip: &str, app: &str, registration: Option<&str>) -> HostRecord {
        let mut r: HostRecord = serde_json::from_value(serde_json::json!({
            "ip": ip, "app": app, "env": "prod", "idc": "cn0"
        }))
        .unwrap();
        r.registration = registration.map(String::from);
        r
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn kinds(ts: &[Transition]) -> Vec<(EventKind, String)> {
        ts.iter().map(|t| (t.kind, t.ip.to_string())).collect()
    }

    #[test]
    fn joins_leaves_changes_in_ip_order() {
        let view = ReplicaView::from_records(
            7,
            vec![
                rec("10.0.0.9", "a", Some("r9")),
                rec("10.0.0.2", "a", Some("r2-new")),
                rec("10.0.0.3", "a", Some("r3")),
                rec("10.0.0.4", "b", Some("r4")),
                serde_json::from_value(serde_json::json!({
                    "cidr": "10.1.0.0/16", "app": "a", "env": "prod", "idc": "cn0"
                }))
                .unwrap(),
            ],
        )
        .unwrap();
        let mut joined: HashMap<IpAddr, Arc<HostRecord>> = HashMap::new();
        for r in [
            rec("10.0.0.1", "a", Some("r1")),
            rec("10.0.0.2", "a", Some("r2")),
            rec("10.0.0.3", "a", Some("r3")),
            rec("10.0.0.4", "a", Some("r4")),
        ] {
            joined.insert(r.ip.unwrap(), Arc::new(r));
        }
        let f = Filter::new().app("a");
        let ts = diff(&joined, &view, &Changed::All, &f);
        assert_eq!(
            kinds(&ts),
            vec![
                (EventKind::Leave, "10.0.0.1".into()),
                (EventKind::Change, "10.0.0.2".into()),
                // 10.0.0.3 is unchanged; 10.0.0.4 moved to app b: out of the filter.
                (EventKind::Leave, "10.0.0.4".into()),
                (EventKind::Join, "10.0.0.9".into()),
            ]
        );
        // The leave carries the last record known, the change both registrations.
        assert_eq!(ts[0].record.registration.as_deref(), Some("r1"));
        assert_eq!(ts[1].record.registration.as_deref(), Some("r2-new"));
        assert_eq!(
            ts[1].previous.as_ref().unwrap().registration.as_deref(),
            Some("r2")
        );
        assert_eq!(ts[2].record.app.as_deref(), Some("a"));
        // Only the keys a delta names are looked at.
        let some = diff(
            &joined,
            &view,
            &Changed::Keys(vec![
                RecordKey::Ip(ip("10.0.0.9")),
                "10.1.0.0/16".parse().unwrap(),
            ]),
            &f,
        );
        assert_eq!(kinds(&some), vec![(EventKind::Join, "10.0.0.9".into())]);
        // Applied, nothing is left to say; the filter on b sees 10.0.0.4 join.
        for t in &ts {
            apply(&mut joined, t);
        }
        assert!(diff(&joined, &view, &Changed::All, &f).is_empty());
        let on_b = diff(
            &HashMap::new(),
            &view,
            &Changed::All,
            &Filter::new().app("b"),
        );
        assert_eq!(kinds(&on_b), vec![(EventKind::Join, "10.0.0.4".into())]);
    }

    #[test]
    fn only_identity_fields_make_a_change() {
        let mut relabelled = rec("10.0.0.1", "a", Some("r1"));
        relabelled.hostname = Some("other".into());
        let view = ReplicaView::from_records(2, vec![relabelled]).unwrap();
        let mut joined = HashMap::new();
        joined.insert(ip("10.0.0.1"), Arc::new(rec("10.0.0.1", "a", Some("r1"))));
        assert!(diff(&joined, &view, &Changed::All, &Filter::new()).is_empty());
    }
}
