//! An incremental decoder for `text/event-stream` (Server-Sent Events), as
//! upstreams use it to answer MCP requests. Bounded: an event larger than the
//! limit is an error, not an unbounded buffer.

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` (absent means `message`).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// `id:`.
    pub id: Option<String>,
}

/// The stream broke a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// An event or a line exceeded the limit.
    #[error("event stream: event larger than {0} bytes")]
    TooLarge(usize),
    /// A line is not UTF-8.
    #[error("event stream: line is not UTF-8")]
    NotUtf8,
}

/// Feed bytes in with [`SseDecoder::push`]; complete events come out.
#[derive(Debug)]
pub struct SseDecoder {
    line: Vec<u8>,
    data: String,
    has_data: bool,
    event: Option<String>,
    id: Option<String>,
    max: usize,
}

impl SseDecoder {
    /// A decoder that refuses events over `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            line: Vec::new(),
            data: String::new(),
            has_data: false,
            event: None,
            id: None,
            max,
        }
    }

    /// Decodes `chunk`, returning the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut events = Vec::new();
        for &byte in chunk {
            if byte == b'\n' {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                let line = String::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
                if let Some(event) = self.line_done(&line)? {
                    events.push(event);
                }
            } else {
                self.line.push(byte);
                if self.line.len() + self.data.len() > self.max {
                    return Err(SseError::TooLarge(self.max));
                }
            }
        }
        Ok(events)
    }

    fn line_done(&mut self, line: &str) -> Result<Option<SseEvent>, SseError> {
        if line.is_empty() {
            if !self.has_data {
                self.event = None;
                return Ok(None);
            }
            self.has_data = false;
            let event = SseEvent {
                event: self.event.take(),
                data: std::mem::take(&mut self.data),
                id: self.id.clone(),
            };
            return Ok(Some(event));
        }
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
                if self.data.len() > self.max {
                    return Err(SseError::TooLarge(self.max));
                }
            }
            "event" => self.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks() {
        let mut d = SseDecoder::new(1024);
        let stream =
            b": comment\r\nevent: message\r\nid: 1\r\ndata: {\"a\":\ndata: 1}\r\n\r\ndata:x\n\n";
        let mut all = Vec::new();
        for chunk in stream.chunks(3) {
            all.extend(d.push(chunk).unwrap());
        }
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].data, "{\"a\":\n1}");
        assert_eq!(all[0].event.as_deref(), Some("message"));
        assert_eq!(all[0].id.as_deref(), Some("1"));
        assert_eq!(all[1].data, "x");
        assert_eq!(all[1].event, None);
    }

    #[test]
    fn oversized_and_broken_streams_are_errors() {
        let mut d = SseDecoder::new(16);
        assert_eq!(
            d.push(b"data: 0123456789abcdefghij\n"),
            Err(SseError::TooLarge(16))
        );
        let mut d = SseDecoder::new(16);
        assert_eq!(d.push(&[b'x'; 40]), Err(SseError::TooLarge(16)));
        let mut d = SseDecoder::new(64);
        assert_eq!(d.push(b"data: \xff\xfe\n"), Err(SseError::NotUtf8));
        let mut d = SseDecoder::new(64);
        assert_eq!(d.push(b"retry: 10\nevent: x\n\n").unwrap(), vec![]);
    }
}
