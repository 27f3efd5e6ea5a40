//! Optional bearer tokens (`service.api_tokens`). When any is configured, every endpoint but
//! `/health` needs `Authorization: Bearer <token>` with one of them.

use axum::http::{header, HeaderMap};

/// Whether the request carries one of `tokens`. Compares in constant time per token, so the
/// answer's timing does not tell how much of a guess was right.
pub fn authorized(headers: &HeaderMap, tokens: &[String]) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return false;
    }
    let token = token.trim().as_bytes();
    tokens.iter().fold(false, |found, t| {
        found | constant_time_eq(t.as_bytes(), token)
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_a_bearer_header_with_a_configured_token_passes() {
        let tokens = vec![
            "0123456789abcdef".to_string(),
            "another-token-of-16".to_string(),
        ];
        let table: [(Option<&[u8]>, bool); 11] = [
            (Some(b"Bearer 0123456789abcdef"), true),
            (Some(b"bearer another-token-of-16"), true),
            (Some(b"BEARER  0123456789abcdef "), true),
            (Some(b"Bearer 0123456789abcdeF"), false),
            (Some(b"Bearer 0123456789abcde"), false),
            (Some(b"Bearer 0123456789abcdef0"), false),
            (Some(b"Token 0123456789abcdef"), false),
            (Some(b"0123456789abcdef"), false),
            (Some(b"Bearer "), false),
            (Some(b"Bearer \xff0123456789abcdef"), false),
            (None, false),
        ];
        for (value, expected) in table {
            let mut headers = HeaderMap::new();
            if let Some(v) = value {
                headers.insert(header::AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
            }
            assert_eq!(authorized(&headers, &tokens), expected, "{value:?}");
        }
    }
}
