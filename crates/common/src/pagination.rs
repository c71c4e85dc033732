//! List pagination as each OpenStack service does it: `limit`/`marker` with `*_links`
//! (Nova, Cinder, Neutron), `next` (Glance), and a server-side cap with `truncated`
//! (Keystone).

use serde_json::{Value, json};

/// Apply Keystone's `list_limit`: keep at most `limit` items and say whether some were cut.
pub fn truncate<T>(items: &mut Vec<T>, limit: Option<usize>) -> bool {
    match limit {
        Some(l) if items.len() > l => {
            items.truncate(l);
            true
        }
        _ => false,
    }
}

/// The page after `marker` (exclusive) of at most `limit` items from a list already in
/// its final order. `None` when the marker is not in the list (services answer 400/404).
pub fn page_after<'a, T>(
    items: &'a [T],
    marker: Option<&str>,
    limit: usize,
    id_of: impl Fn(&T) -> &str,
) -> Option<&'a [T]> {
    let start = match marker {
        None => 0,
        Some(m) => items.iter().position(|i| id_of(i) == m)? + 1,
    };
    let end = (start + limit).min(items.len());
    Some(&items[start.min(items.len())..end])
}

/// Nova/Cinder-style `{"rel": "next", "href": ...}` link, when a full page was returned.
pub fn next_link(base_url: &str, query: &[(&str, String)], last_id: &str) -> Value {
    let mut q: Vec<String> = query
        .iter()
        .filter(|(k, _)| *k != "marker")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    q.push(format!("marker={last_id}"));
    json!({"rel": "next", "href": format!("{base_url}?{}", q.join("&"))})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation() {
        let mut v = vec![1, 2, 3];
        assert!(!truncate(&mut v, None));
        assert!(!truncate(&mut v, Some(3)));
        assert!(truncate(&mut v, Some(2)));
        assert_eq!(v, vec![1, 2]);
    }

    #[test]
    fn pages() {
        let v = vec!["a".to_string(), "b".into(), "c".into()];
        assert_eq!(page_after(&v, None, 2, |s| s).unwrap(), &v[..2]);
        assert_eq!(page_after(&v, Some("b"), 2, |s| s).unwrap(), &v[2..]);
        assert_eq!(page_after(&v, Some("c"), 2, |s| s).unwrap().len(), 0);
        assert!(page_after(&v, Some("z"), 2, |s| s).is_none());
        let l = next_link("http://h/v2.1/servers", &[("limit", "2".into())], "b");
        assert_eq!(l["href"], "http://h/v2.1/servers?limit=2&marker=b");
    }
}
