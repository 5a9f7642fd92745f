use ate_model::{FieldSelector, LabelSelector, ModelError};

/// The largest page a list returns.
pub const MAX_PAGE: usize = 1000;

/// What to list: Kubernetes-style selectors plus keyset pagination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    pub field_selector: FieldSelector,
    pub label_selector: LabelSelector,
    /// Page size; 0 means `MAX_PAGE`.
    pub limit: usize,
    /// Where the previous page stopped, as returned in `Page::continue_token`.
    pub continue_token: Option<String>,
}

impl ListOptions {
    pub fn with_fields(field_selector: FieldSelector) -> Self {
        Self {
            field_selector,
            ..Default::default()
        }
    }

    /// The effective page size.
    pub fn page_size(&self) -> usize {
        if self.limit == 0 {
            MAX_PAGE
        } else {
            self.limit.min(MAX_PAGE)
        }
    }

    /// The key after which this page starts.
    pub fn after_key(&self) -> Result<Option<String>, ModelError> {
        self.continue_token.as_deref().map(decode_token).transpose()
    }
}

/// One page of results. Pages are in key order; a `continue_token` means there may be more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub continue_token: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `size + 1` fetched items: the extra one only tells that
    /// another page exists.
    pub fn from_fetched(mut items: Vec<T>, size: usize, key: impl Fn(&T) -> &str) -> Self {
        let more = items.len() > size;
        items.truncate(size);
        let continue_token = if more {
            items.last().map(|l| encode_token(key(l)))
        } else {
            None
        };
        Self {
            items,
            continue_token,
        }
    }
}

/// Encodes the last key of a page as an opaque token.
pub fn encode_token(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

pub fn decode_token(token: &str) -> Result<String, ModelError> {
    let bad = || ModelError::invalid("page_token", token, "not a token this server issued");
    if !token.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
        .collect::<Result<Vec<u8>, _>>()?;
    String::from_utf8(bytes).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let t = encode_token("team-a/x");
        assert_eq!(decode_token(&t).unwrap(), "team-a/x");
        for bad in ["zz", "abc", "ff"] {
            assert!(decode_token(bad).is_err(), "{bad}");
        }
    }
}
