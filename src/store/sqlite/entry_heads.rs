//! Reads a history row's `entry_heads` (`history_cells.rs`) element by element without a
//! general JSON parser: a miss reads every row of a history, and serde's parse of them into
//! borrowed tuples was most of a row's cost. The shape is fixed, `[[id, source, role,
//! created_at, bytes], ...]`, compact as this store and SQLite's `json_array` write it
//! (whitespace between tokens is allowed too). A string is taken as it lies unless it holds an
//! escape, which serde_json then reads; anything else out of shape is an error.

use std::borrow::Cow;

use crate::store::sqlite::rows::{Failure, Outcome};

/// One element of `entry_heads`.
pub(super) struct HeadCells<'a> {
    pub id: Cow<'a, str>,
    pub source: Cow<'a, str>,
    pub role: Cow<'a, str>,
    pub created_at: i64,
    pub bytes: usize,
}

/// The elements of one `entry_heads` text, in order: a cursor over its bytes (every token this
/// reads is ASCII, so each position it stops at is a character boundary).
pub(super) struct HeadsReader<'a> {
    text: &'a str,
    at: usize,
    first: bool,
    done: bool,
}

impl<'a> HeadsReader<'a> {
    pub(super) fn new(heads: &'a str) -> Outcome<Self> {
        let mut reader = Self {
            text: heads,
            at: 0,
            first: true,
            done: false,
        };
        reader.expect(b'[')?;
        Ok(reader)
    }

    /// The next element, or `None` after the last (the closing bracket ends the text).
    pub(super) fn next_head(&mut self) -> Outcome<Option<HeadCells<'a>>> {
        if self.done {
            return Ok(None);
        }
        if self.peek() == Some(b']') {
            self.at += 1;
            if self.peek().is_some() {
                return Err(malformed());
            }
            self.done = true;
            return Ok(None);
        }
        if !self.first {
            self.expect(b',')?;
        }
        self.first = false;
        self.expect(b'[')?;
        let id = self.string()?;
        self.expect(b',')?;
        let source = self.string()?;
        self.expect(b',')?;
        let role = self.string()?;
        self.expect(b',')?;
        let created_at = self.integer()?;
        self.expect(b',')?;
        let bytes = usize::try_from(self.integer()?).map_err(|_| malformed())?;
        self.expect(b']')?;
        Ok(Some(HeadCells {
            id,
            source,
            role,
            created_at,
            bytes,
        }))
    }

    /// The next byte that is not whitespace, left unread.
    fn peek(&mut self) -> Option<u8> {
        let bytes = self.text.as_bytes();
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(self.at) {
            self.at += 1;
        }
        bytes.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Outcome<()> {
        if self.peek() != Some(byte) {
            return Err(malformed());
        }
        self.at += 1;
        Ok(())
    }

    /// A JSON string: borrowed as it lies, or read by serde_json if it holds an escape.
    fn string(&mut self) -> Outcome<Cow<'a, str>> {
        self.expect(b'"')?;
        let bytes = self.text.as_bytes();
        let start = self.at;
        let mut at = start;
        let mut escaped = false;
        loop {
            match bytes.get(at) {
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    at += 2;
                }
                Some(_) => at += 1,
                None => return Err(malformed()),
            }
        }
        self.at = at + 1;
        if !escaped {
            return self
                .text
                .get(start..at)
                .map(Cow::Borrowed)
                .ok_or_else(malformed);
        }
        let quoted = self.text.get(start - 1..=at).ok_or_else(malformed)?;
        Ok(Cow::Owned(serde_json::from_str(quoted)?))
    }

    /// A JSON integer: an optional minus sign and digits, within `i64`.
    fn integer(&mut self) -> Outcome<i64> {
        let negative = self.peek() == Some(b'-');
        self.at += usize::from(negative);
        let bytes = self.text.as_bytes();
        let start = self.at;
        let mut value: i64 = 0;
        while let Some(&digit @ b'0'..=b'9') = bytes.get(self.at) {
            let digit = i64::from(digit - b'0');
            value = value
                .checked_mul(10)
                .and_then(|v| {
                    if negative {
                        v.checked_sub(digit)
                    } else {
                        v.checked_add(digit)
                    }
                })
                .ok_or_else(malformed)?;
            self.at += 1;
        }
        if self.at == start {
            return Err(malformed());
        }
        Ok(value)
    }
}

fn malformed() -> Failure {
    Failure::Invalid("a history row's heads are not the JSON this store writes".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An element's id, source, role, time and length, owned.
    type Cells = (String, String, String, i64, usize);

    fn read_all(heads: &str) -> Outcome<Vec<Cells>> {
        let mut reader = HeadsReader::new(heads)?;
        let mut out = Vec::new();
        while let Some(head) = reader.next_head()? {
            out.push((
                head.id.into_owned(),
                head.source.into_owned(),
                head.role.into_owned(),
                head.created_at,
                head.bytes,
            ));
        }
        Ok(out)
    }

    /// What serde_json reads from the same text, for comparison.
    fn by_serde(heads: &str) -> Vec<Cells> {
        serde_json::from_str(heads).expect("serde reads it")
    }

    #[test]
    fn reads_what_serde_json_reads() {
        for heads in [
            "[]",
            r#"[["a1","api_request","user",0,42]]"#,
            r#"[["a1","api_request","user",-5,0],["b\"2\\","internal","tool",17,3]]"#,
            r#" [ [ "ü😀" , "api_response" , "assistant" , 1733 , 9 ] ] "#,
            r#"[["\u00fc\n","api_request","user",9223372036854775807,1]]"#,
            r#"[["x\\","internal","tool",-9223372036854775808,1]]"#,
        ] {
            assert_eq!(read_all(heads).expect(heads), by_serde(heads), "{heads}");
        }
    }

    #[test]
    fn text_out_of_shape_is_an_error() {
        for heads in [
            "",
            "[",
            r#"[["a1","api_request","user",0,42]"#,
            r#"[["a1","api_request","user",0,42]]x"#,
            r#"[["a1","api_request","user",0]]"#,
            r#"[["a1","api_request","user",0,42,7]]"#,
            r#"[["a1","api_request","user",1.5,42]]"#,
            r#"[["a1","api_request","user",0,-1]]"#,
            r#"[["a1","api_request","user",0,42]["b","internal","tool",0,1]]"#,
            r#"[["a1,"api_request","user",0,42]]"#,
            r#"[["a1\"]]"#,
            r#"[["a\q","api_request","user",0,42]]"#,
            r#"[[1,"api_request","user",0,42]]"#,
            r#"[["a1","api_request","user",9223372036854775808,42]]"#,
            r#"[["a1","api_request","user",-,42]]"#,
        ] {
            assert!(read_all(heads).is_err(), "{heads}");
        }
    }
}
