//! Tokenizer and parser for the oslo.policy rule language.
//!
//! The token rules follow oslo.policy: the text is split on whitespace, and only
//! parentheses at the very start or end of a whitespace-separated word are grouping
//! parentheses (so `%(target.id)s` keeps its own). Precedence is `not` > `and` > `or`,
//! which is what oslo's shift-reduce parser produces. Unlike oslo, which logs and fails
//! closed on text it cannot parse, malformed rules are rejected with a position so an
//! operator sees the mistake at load time instead of a silent deny.

use super::check::{Left, Node, Template};
use super::credentials::CredKey;
use thiserror::Error;

/// A rule string that is not valid policy language.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message} (at character {position})")]
pub struct ParseError {
    /// 0-based character offset into the rule string.
    pub position: usize,
    pub message: String,
}

impl ParseError {
    fn at(text: &str, byte_offset: usize, message: impl Into<String>) -> Self {
        let position = text
            .get(..byte_offset)
            .map_or(byte_offset, |s| s.chars().count());
        Self {
            position,
            message: message.into(),
        }
    }
}

/// Deep enough for any real policy; only guards the recursive parser's stack.
const MAX_NESTING: usize = 64;

#[derive(Debug)]
enum Tok {
    LParen,
    RParen,
    And,
    Or,
    Not,
    Quoted,
    Check(Node),
}

/// Parse a check string into a check tree. `rule:` references are left unresolved.
pub(crate) fn parse(text: &str) -> Result<Node, ParseError> {
    // oslo: the empty rule always passes.
    if text.is_empty() {
        return Ok(Node::Always);
    }
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Err(ParseError::at(text, 0, "rule is only whitespace"));
    }
    let mut p = Parser {
        text,
        tokens,
        pos: 0,
        depth: 0,
    };
    let node = p.or_expr()?;
    if let Some((off, tok)) = p.tokens.get(p.pos) {
        let what = match tok {
            Tok::RParen => "unbalanced ')'",
            _ => "expected 'and', 'or' or the end of the rule",
        };
        return Err(ParseError::at(text, *off, what));
    }
    Ok(node)
}

fn tokenize(text: &str) -> Result<Vec<(usize, Tok)>, ParseError> {
    let mut out = Vec::new();
    for (start, word) in split_whitespace_indices(text) {
        let inner = word.trim_start_matches('(');
        let lead = word.len() - inner.len();
        for i in 0..lead {
            out.push((start + i, Tok::LParen));
        }
        if inner.is_empty() {
            continue;
        }
        let core = inner.trim_end_matches(')');
        let trail = inner.len() - core.len();
        let core_start = start + lead;
        if core.eq_ignore_ascii_case("and") {
            out.push((core_start, Tok::And));
        } else if core.eq_ignore_ascii_case("or") {
            out.push((core_start, Tok::Or));
        } else if core.eq_ignore_ascii_case("not") {
            out.push((core_start, Tok::Not));
        } else if !core.is_empty() {
            // oslo looks at the word with its trailing parens when deciding "quoted".
            if is_quoted(inner) {
                out.push((core_start, Tok::Quoted));
            } else {
                let node = parse_check(core)
                    .map_err(|(off, msg)| ParseError::at(text, core_start + off, msg))?;
                out.push((core_start, Tok::Check(node)));
            }
        }
        let core_end = core_start + core.len();
        for i in 0..trail {
            out.push((core_end + i, Tok::RParen));
        }
    }
    Ok(out)
}

fn split_whitespace_indices(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut rest_start = 0;
    std::iter::from_fn(move || {
        let rest = text.get(rest_start..)?;
        let skip = rest.len() - rest.trim_start().len();
        let start = rest_start + skip;
        let tail = text.get(start..)?;
        if tail.is_empty() {
            return None;
        }
        let len = tail.find(char::is_whitespace).unwrap_or(tail.len());
        rest_start = start + len;
        tail.get(..len).map(|w| (start, w))
    })
}

fn is_quoted(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && matches!((b[0], b[b.len() - 1]), (b'"', b'"') | (b'\'', b'\''))
}

/// Parse one `KIND:MATCH`, `@` or `!`. Errors carry a byte offset into `check`.
pub(crate) fn parse_check(check: &str) -> Result<Node, (usize, String)> {
    match check {
        "@" => return Ok(Node::Always),
        "!" => return Ok(Node::Never),
        _ => {}
    }
    let colon = split_point(check).ok_or_else(|| {
        (
            0,
            format!("'{check}' is not a check: expected KIND:MATCH, '@' or '!'"),
        )
    })?;
    let (kind, rest) = check.split_at(colon);
    let matched = rest.get(1..).unwrap_or_default();
    let match_off = colon + 1;
    let template = |s: &str| Template::parse(s).map_err(|(off, m)| (match_off + off, m));
    Ok(match kind {
        "rule" => {
            if matched.is_empty() {
                return Err((match_off, "'rule:' needs a rule name".into()));
            }
            Node::Rule {
                name: matched.into(),
                slot: usize::MAX,
            }
        }
        "role" => Node::Role(template(matched)?),
        "http" | "https" => Node::Remote(check.into()),
        _ => Node::Generic {
            left: parse_left(kind),
            right: template(matched)?,
        },
    })
}

/// Where KIND ends: the first ':' — except that a quoted literal kind may itself
/// contain ':' (`'a:b':%(x)s`).
fn split_point(check: &str) -> Option<usize> {
    let first = check.chars().next()?;
    if (first == '\'' || first == '"')
        && let Some(close) = check.get(1..).and_then(|r| r.find(first))
        && check.get(close + 2..close + 3) == Some(":")
    {
        return Some(close + 2);
    }
    check.find(':')
}

/// oslo runs `ast.literal_eval` on KIND and compares its `str()` with the match when
/// it is a Python literal; otherwise KIND is a dotted path into the credentials.
fn parse_left(kind: &str) -> Left {
    if is_quoted(kind) {
        return Left::Literal(kind.get(1..kind.len() - 1).unwrap_or_default().into());
    }
    if matches!(kind, "True" | "False" | "None") {
        return Left::Literal(kind.into());
    }
    if let Ok(n) = kind.parse::<i64>() {
        return Left::Literal(n.to_string().into());
    }
    Left::Cred(CredKey::parse(kind))
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<(usize, Tok)>,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn offset(&self) -> usize {
        self.tokens
            .get(self.pos)
            .map_or(self.text.len(), |(off, _)| *off)
    }

    fn or_expr(&mut self) -> Result<Node, ParseError> {
        let first = self.and_expr()?;
        if !matches!(self.peek(), Some(Tok::Or)) {
            return Ok(first);
        }
        let mut items = vec![first];
        while matches!(self.peek(), Some(Tok::Or)) {
            self.pos += 1;
            items.push(self.and_expr()?);
        }
        Ok(Node::Or(items.into()))
    }

    fn and_expr(&mut self) -> Result<Node, ParseError> {
        let first = self.unary()?;
        if !matches!(self.peek(), Some(Tok::And)) {
            return Ok(first);
        }
        let mut items = vec![first];
        while matches!(self.peek(), Some(Tok::And)) {
            self.pos += 1;
            items.push(self.unary()?);
        }
        Ok(Node::And(items.into()))
    }

    fn unary(&mut self) -> Result<Node, ParseError> {
        let off = self.offset();
        let Some((_, tok)) = self.tokens.get_mut(self.pos) else {
            return Err(ParseError::at(
                self.text,
                off,
                "the rule ended where a check was expected",
            ));
        };
        match tok {
            Tok::Not => {
                self.pos += 1;
                let inner = self.nested(Self::unary)?;
                Ok(Node::Not(Box::new(inner)))
            }
            Tok::LParen => {
                self.pos += 1;
                let inner = self.nested(Self::or_expr)?;
                if !matches!(self.peek(), Some(Tok::RParen)) {
                    return Err(ParseError::at(self.text, off, "unclosed '('"));
                }
                self.pos += 1;
                Ok(inner)
            }
            Tok::Check(node) => {
                let node = std::mem::replace(node, Node::Never);
                self.pos += 1;
                Ok(node)
            }
            Tok::Quoted => Err(ParseError::at(
                self.text,
                off,
                "a quoted string on its own is not a check",
            )),
            Tok::RParen => Err(ParseError::at(self.text, off, "unexpected ')'")),
            Tok::And | Tok::Or => Err(ParseError::at(
                self.text,
                off,
                "expected a check before 'and'/'or'",
            )),
        }
    }

    fn nested(&mut self, f: fn(&mut Self) -> Result<Node, ParseError>) -> Result<Node, ParseError> {
        if self.depth >= MAX_NESTING {
            return Err(ParseError::at(
                self.text,
                self.offset(),
                "rule is nested too deeply",
            ));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }
}
