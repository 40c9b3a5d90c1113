//! Error answers: the [`Code`] and the [`ErrorBody`].

use serde::{Deserialize, Serialize};

/// Error codes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// Not JSON, unknown command or field.
    BadRequest,
    /// Unsupported protocol version.
    Version,
    /// No such bridge or port.
    NotFound,
    /// Already there.
    Exists,
    /// A value out of range or inconsistent.
    Invalid,
    /// A rule that does not parse.
    BadFlow,
    /// A device that cannot be opened.
    Device,
    /// Something went wrong inside the daemon.
    Internal,
}

/// An error answer. Besides the text (`message`, `where`, `detail`), an
/// error about one rule says which (`rule`) and where in it (`column`), so
/// a client never reads positions out of the text; a client that read the
/// rules from a file adds `file` and `line`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// What kind.
    pub code: Code,
    /// What went wrong, for people.
    pub message: String,
    /// Where in the request, when it is about one part of it.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub place: Option<String>,
    /// More context (e.g. the rule with a caret under the problem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The rule it is about: its position in the request's list, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<u32>,
    /// The column in that rule (or in the match), from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    /// The file the rule came from (filled in by the client that read it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<Box<str>>,
    /// The line of that file, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

impl ErrorBody {
    /// An error without a place.
    pub fn new(code: Code, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            code,
            message: message.into(),
            place: None,
            detail: None,
            rule: None,
            column: None,
            file: None,
            line: None,
        }
    }

    /// The same, with context.
    pub fn detail(mut self, detail: impl Into<String>) -> ErrorBody {
        self.detail = Some(detail.into());
        self
    }

    /// The same, located.
    pub fn at(mut self, place: impl Into<String>) -> ErrorBody {
        self.place = Some(place.into());
        self
    }

    /// The same, about rule `rule` (from 1; `None` for a match) at `column`.
    pub fn in_rule(mut self, rule: Option<usize>, column: usize) -> ErrorBody {
        let n = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
        self.rule = rule.map(n);
        self.column = Some(n(column));
        self
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.place {
            Some(p) => write!(f, "{p}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_their_position() {
        let e = ErrorBody::new(Code::BadFlow, "no such field")
            .at("flow 2 of 3, column 4")
            .in_rule(Some(2), 4);
        let s = serde_json::to_string(&e).expect("json");
        assert_eq!(
            s,
            r#"{"code":"bad_flow","message":"no such field","where":"flow 2 of 3, column 4","rule":2,"column":4}"#
        );
        let plain = serde_json::to_string(&ErrorBody::new(Code::NotFound, "x")).expect("json");
        assert_eq!(plain, r#"{"code":"not_found","message":"x"}"#);
    }
}
