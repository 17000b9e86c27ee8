//! `page` / `per_page` and the `Link`, `Total`, `Per-Page` headers.

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri};

/// Page size when the client sends none.
pub const DEFAULT_PER_PAGE: usize = 100;
/// Largest page served; bigger requests are clamped.
pub const MAX_PER_PAGE: usize = 1000;

/// One page of a list, with the headers that describe it.
pub struct Page<T> {
    /// The items of the page.
    pub items: Vec<T>,
    /// `Link`, `Total`, `Per-Page`.
    pub headers: HeaderMap,
}

fn number(query: &HashMap<String, String>, key: &str) -> Option<usize> {
    query.get(key).and_then(|v| v.trim().parse().ok())
}

/// Cuts `items` to the page the query asks for.
pub fn paginate<T>(
    items: Vec<T>,
    query: &HashMap<String, String>,
    uri: &Uri,
    host: Option<&str>,
) -> Page<T> {
    let per_page = number(query, "per_page")
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_PER_PAGE)
        .min(MAX_PER_PAGE);
    let page = number(query, "page").filter(|n| *n > 0).unwrap_or(1);
    let total = items.len();
    let last = total.div_ceil(per_page).max(1);
    let items: Vec<T> = items
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();

    let base = format!("http://{}{}", host.unwrap_or("127.0.0.1"), uri.path());
    let others: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| k.as_str() != "page" && k.as_str() != "per_page")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let link_to = |p: usize, rel: &str| {
        let mut q: Vec<String> = others
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        q.sort();
        q.push(format!("page={p}"));
        q.push(format!("per_page={per_page}"));
        format!("<{base}?{}>; rel=\"{rel}\"", q.join("&"))
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(link_to(1, "first"));
        links.push(link_to((page - 1).min(last), "prev"));
    }
    if page < last {
        links.push(link_to(page + 1, "next"));
        links.push(link_to(last, "last"));
    }
    let mut headers = HeaderMap::new();
    headers.insert(HeaderName::from_static("total"), HeaderValue::from(total));
    headers.insert(
        HeaderName::from_static("per-page"),
        HeaderValue::from(per_page),
    );
    if !links.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&links.join(", ")) {
            headers.insert(axum::http::header::LINK, v);
        }
    }
    Page { items, headers }
}

/// Percent-encodes a query component (unreserved characters kept).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
