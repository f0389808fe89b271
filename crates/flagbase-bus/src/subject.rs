//! Subject validation exactly as nats-server does it (server/sublist.go):
//! tokens separated by `.`, none empty, `*` matching one token and `>` one or
//! more, `>` only as the last token, and no whitespace anywhere.

/// Whether `subject` may be subscribed to: valid tokens, wildcards allowed.
///
/// Like nats-server, a wildcard is a whole token: `a*` and `a>` are literal.
pub fn is_valid_subject(subject: &str) -> bool {
    if subject.is_empty() {
        return false;
    }
    let mut after_full_wildcard = false;
    for token in subject.split('.') {
        if token.is_empty() || after_full_wildcard {
            return false;
        }
        if token.bytes().any(is_space) {
            return false;
        }
        if token == ">" {
            after_full_wildcard = true;
        }
    }
    true
}

/// Whether `subject` may be published to: valid and without wildcards.
pub fn is_valid_publish_subject(subject: &str) -> bool {
    is_valid_subject(subject) && is_literal(subject)
}

/// Whether no token of `subject` is a wildcard.
pub fn is_literal(subject: &str) -> bool {
    !subject.split('.').any(|token| token == "*" || token == ">")
}

/// Whether the literal `subject` matches `filter`, a subject that may hold
/// wildcards. Both are assumed valid; this is the plain definition the
/// subscription index must agree with, and what permission checks use.
pub fn matches(filter: &str, subject: &str) -> bool {
    let mut filter = filter.split('.');
    let mut subject = subject.split('.');
    loop {
        match (filter.next(), subject.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(f), Some(s)) if f == s => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The bytes nats-server counts as whitespace in a subject.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_as_nats_server_validates_them() {
        let table: &[(&str, bool, bool)] = &[
            // subject, valid for SUB, valid for PUB
            ("foo", true, true),
            ("foo.bar.baz", true, true),
            ("foo.*", true, false),
            ("foo.>", true, false),
            (">", true, false),
            ("*", true, false),
            ("*.*.>", true, false),
            ("foo*.bar>", true, true),
            ("foo.>.bar", false, false),
            (">.>", false, false),
            ("", false, false),
            (".", false, false),
            ("foo.", false, false),
            (".foo", false, false),
            ("foo..bar", false, false),
            ("foo bar", false, false),
            ("foo\tbar", false, false),
            ("foo.\r", false, false),
            ("foo.\x0cx", false, false),
            ("_INBOX.abc.*", true, false),
            ("flagbase.flag.created", true, true),
            ("ünïcode.ok", true, true),
        ];
        for &(subject, sub, publish) in table {
            assert_eq!(is_valid_subject(subject), sub, "SUB {subject:?}");
            assert_eq!(
                is_valid_publish_subject(subject),
                publish,
                "PUB {subject:?}"
            );
        }
    }

    #[test]
    fn matches_wildcards_token_by_token() {
        let table: &[(&str, &str, bool)] = &[
            ("foo", "foo", true),
            ("foo", "foo.bar", false),
            ("foo.*", "foo.bar", true),
            ("foo.*", "foo", false),
            ("foo.*", "foo.bar.baz", false),
            ("foo.>", "foo.bar.baz", true),
            ("foo.>", "foo", false),
            (">", "foo", true),
            ("*.bar", "foo.bar", true),
            ("foo*", "foox", false),
            ("flagbase.flag.>", "flagbase.flag.created", true),
            ("flagbase.flag.>", "flagbase.user.created", false),
        ];
        for &(filter, subject, expected) in table {
            assert_eq!(matches(filter, subject), expected, "{filter} ~ {subject}");
        }
    }
}
