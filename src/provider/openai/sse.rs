//! Server-sent events as a model streams them: bytes in, the `data` of each event out.
//!
//! Follows the WHATWG event-stream rules agentd needs: lines end in CRLF, LF or CR (also when
//! a CRLF is split between two reads), a leading byte-order mark is dropped, `:` starts a
//! comment, a field's value loses one leading space, `data` lines of one event are joined
//! with `\n`, a blank line ends the event, and an event without data is not dispatched. Other
//! fields (`event`, `id`, `retry`) are read past: chat-completion streams carry everything in
//! `data`. A line is only read once its end has arrived, so a character split between two
//! reads is whole by then; an event the stream never finished is dropped. A line, and an
//! event's data, longer than the decoder's limit is an error as soon as it is known to be: an
//! endless line is never buffered whole.

/// Incremental decoder: [`push`](Self::push) what the connection delivered, then take events
/// with [`next_event`](Self::next_event) until it says `None`.
#[derive(Debug)]
pub(crate) struct SseDecoder {
    /// Longest line, and longest event data, accepted (`limits.max_event_bytes`).
    max_bytes: usize,
    buffer: Vec<u8>,
    /// Where the unread part of `buffer` starts.
    read: usize,
    /// How many unread bytes are known to hold no line end: a line arriving in many small
    /// reads is searched once, not from its start again after every read.
    scanned: usize,
    /// The data of the event being read, one `\n` after each `data` line.
    data: String,
    /// Whether the current event has had a `data` line.
    has_data: bool,
    /// The last line ended in CR: an LF that follows belongs to it.
    after_cr: bool,
    /// Whether the start of the stream (and a byte-order mark there) has been seen.
    started: bool,
}

/// The stream's bytes are not an event stream agentd can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("an event-stream line is not UTF-8")]
    NotUtf8,
    #[error("an event-stream line or event is longer than limits.max_event_bytes ({limit} bytes)")]
    TooLong { limit: usize },
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl SseDecoder {
    /// A decoder refusing lines and events longer than `max_bytes`.
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            buffer: Vec::new(),
            read: 0,
            scanned: 0,
            data: String::new(),
            has_data: false,
            after_cr: false,
            started: false,
        }
    }

    /// Appends bytes read from the connection, dropping those already read: what is kept is
    /// at most an unfinished line, so a long stream does not grow the buffer.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buffer.drain(..self.read);
        self.read = 0;
        self.buffer.extend_from_slice(bytes);
    }

    /// The data of the next complete event, if the bytes pushed so far hold one.
    pub(crate) fn next_event(&mut self) -> Result<Option<String>, DecodeError> {
        if !self.started {
            let unread = &self.buffer[self.read..];
            if unread.len() < BOM.len() && BOM.starts_with(unread) {
                return Ok(None);
            }
            self.started = true;
            if unread.starts_with(BOM) {
                self.read += BOM.len();
            }
        }
        loop {
            if self.after_cr && self.read < self.buffer.len() {
                self.after_cr = false;
                if self.buffer[self.read] == b'\n' {
                    self.read += 1;
                }
            }
            let unread = &self.buffer[self.read..];
            let too_long = DecodeError::TooLong {
                limit: self.max_bytes,
            };
            let found = unread[self.scanned..]
                .iter()
                .position(|&b| b == b'\n' || b == b'\r');
            let Some(end) = found.map(|at| self.scanned + at) else {
                self.scanned = unread.len();
                // An unfinished line already over the limit will not get shorter.
                return if unread.len() > self.max_bytes {
                    Err(too_long)
                } else {
                    Ok(None)
                };
            };
            if end > self.max_bytes {
                return Err(too_long);
            }
            self.after_cr = unread[end] == b'\r';
            let line = std::str::from_utf8(&unread[..end]).map_err(|_| DecodeError::NotUtf8)?;
            if self.data.len() + line.len() > self.max_bytes {
                return Err(too_long);
            }
            let event = take_line(&mut self.data, &mut self.has_data, line);
            self.read += end + 1;
            self.scanned = 0;
            if event.is_some() {
                return Ok(event);
            }
        }
    }
}

/// Applies one line to the event being read (`data`, `has_data`); returns the event a blank
/// line completes.
fn take_line(data: &mut String, has_data: &mut bool, line: &str) -> Option<String> {
    if line.is_empty() {
        if !std::mem::take(has_data) {
            return None;
        }
        let mut event = std::mem::take(data);
        event.pop();
        return Some(event);
    }
    if line.starts_with(':') {
        return None;
    }
    let (field, value) = match line.split_once(':') {
        Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
        None => (line, ""),
    };
    if field == "data" {
        data.push_str(value);
        data.push('\n');
        *has_data = true;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{DecodeError, SseDecoder};

    /// Feeds `chunks` one after the other; returns every event's data.
    fn decode(chunks: &[&[u8]]) -> Result<Vec<String>, DecodeError> {
        decode_within(1 << 20, chunks)
    }

    fn decode_within(max_bytes: usize, chunks: &[&[u8]]) -> Result<Vec<String>, DecodeError> {
        let mut decoder = SseDecoder::new(max_bytes);
        let mut events = Vec::new();
        for chunk in chunks {
            decoder.push(chunk);
            while let Some(event) = decoder.next_event()? {
                events.push(event);
            }
        }
        Ok(events)
    }

    #[test]
    fn reads_events_ended_by_lf_crlf_or_cr() {
        let events = decode(&[b"data: a\n\ndata: b\r\n\r\ndata: c\r\rdata: d\n\n"]).unwrap();
        assert_eq!(events, ["a", "b", "c", "d"]);
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let stream = "\u{feff}: comment\r\ndata: {\"t\":\"h\u{e9}\u{1F600}\"}\r\n\r\nevent: x\nid: 7\ndata:one\ndata: two\n\ndata\n\n";
        let bytes = stream.as_bytes();
        let whole = decode(&[bytes]).unwrap();
        assert_eq!(whole, ["{\"t\":\"h\u{e9}\u{1F600}\"}", "one\ntwo", ""]);
        for cut in 0..=bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(decode(&[a, b]).unwrap(), whole, "split at byte {cut}");
        }
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(decode(&bytewise).unwrap(), whole);
    }

    #[test]
    fn events_without_data_and_unfinished_events_are_not_dispatched() {
        let events = decode(&[b": keep-alive\n\nevent: ping\n\ndata: kept\n\ndata: never ended\n"]);
        assert_eq!(events.unwrap(), ["kept"]);
    }

    #[test]
    fn only_one_leading_space_is_dropped_and_colons_in_values_stay() {
        let events = decode(&[b"data:  two spaces\n\ndata: a:b:c\n\n"]).unwrap();
        assert_eq!(events, [" two spaces", "a:b:c"]);
    }

    #[test]
    fn a_line_that_is_not_utf8_is_an_error() {
        assert_eq!(decode(&[b"data: \xff\xfe\n\n"]), Err(DecodeError::NotUtf8));
    }

    #[test]
    fn a_long_stream_does_not_keep_what_was_read() {
        let mut decoder = SseDecoder::new(1 << 20);
        for i in 0..10_000 {
            decoder.push(format!("data: {i}\n\n").as_bytes());
            assert_eq!(decoder.next_event().unwrap(), Some(i.to_string()));
        }
        assert!(
            decoder.buffer.capacity() < 1024,
            "{}",
            decoder.buffer.capacity()
        );
    }

    #[test]
    fn lines_and_events_over_the_limit_are_errors_before_they_are_whole() {
        let too_long = DecodeError::TooLong { limit: 16 };
        assert_eq!(
            decode_within(16, &[b"data: 0123456789\n\n"]),
            Ok(vec!["0123456789".to_owned()]),
            "a line of exactly the limit is read"
        );
        assert_eq!(
            decode_within(16, &[b"data: 0123456789A\n\n"]),
            Err(too_long.clone())
        );
        // A line that never ends is refused once it is over the limit, not buffered on.
        let mut decoder = SseDecoder::new(16);
        decoder.push(b"data: 0123456789");
        assert_eq!(decoder.next_event(), Ok(None));
        decoder.push(b"ABCDEF");
        assert_eq!(decoder.next_event(), Err(too_long.clone()));
        // Many short data lines of one event add up.
        assert_eq!(
            decode_within(16, &[b"data: 01234\ndata: 56789\ndata: ABCDE\n\n"]),
            Err(too_long)
        );
    }
}
