//! Message bodies: how each is delimited, which headers are hop-by-hop, and relaying one from
//! upstream to client as is (the ECR stand-in's forwarding) or with a fault at an offset.

use std::io::{self, BufRead, Write};
use std::time::Duration;

use crate::head::Head;

use super::Fault;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

pub(crate) fn body_framing(head: &Head, is_response: bool) -> io::Result<Framing> {
    if head.has_token("transfer-encoding", "chunked") {
        return Ok(Framing::Chunked);
    }
    match head.header("content-length") {
        Some(length) => length.parse().map(Framing::Length).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad Content-Length {length:?}"),
            )
        }),
        None if is_response => Ok(Framing::UntilClose),
        None => Ok(Framing::Empty),
    }
}

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
];

pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|hop| hop.eq_ignore_ascii_case(name))
}

pub(crate) fn framing_header(framing: Framing) -> Option<String> {
    match framing {
        Framing::Chunked => Some("Transfer-Encoding: chunked\r\n".to_string()),
        Framing::UntilClose => Some("Connection: close\r\n".to_string()),
        // Content-Length is end-to-end and passed through with the other headers.
        Framing::Length(_) | Framing::Empty => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cut {
    Reset,
    Truncate,
}

pub(super) enum RelayEnd {
    Complete,
    Cut(Cut),
}

/// Body offsets at which a fault acts.
#[derive(Default)]
pub(super) struct BodyFaults {
    cut: Option<(u64, Cut)>,
    stall: Option<(u64, Duration)>,
    corrupt_at: Option<u64>,
}

impl BodyFaults {
    pub(super) fn for_fault(fault: Option<Fault>, framing: Framing) -> BodyFaults {
        // The middle of the body when its length is known; otherwise just after its first byte.
        let middle = match framing {
            Framing::Length(length) => length / 2,
            Framing::Empty => 0,
            Framing::Chunked | Framing::UntilClose => 1,
        };
        match fault {
            Some(Fault::ResetMidBody) => BodyFaults {
                cut: Some((middle, Cut::Reset)),
                ..BodyFaults::default()
            },
            Some(Fault::TruncateBody) => BodyFaults {
                cut: Some((middle, Cut::Truncate)),
                ..BodyFaults::default()
            },
            Some(Fault::StallMidBody(duration)) => BodyFaults {
                stall: Some((middle, duration)),
                ..BodyFaults::default()
            },
            Some(Fault::CorruptByte) => BodyFaults {
                // The first byte when the length is unknown, so any non-empty body is hit.
                corrupt_at: Some(if matches!(framing, Framing::Length(_)) {
                    middle
                } else {
                    0
                }),
                ..BodyFaults::default()
            },
            _ => BodyFaults::default(),
        }
    }
}

/// Copies a body from `source` to `sink` in the same framing, untouched (the ECR stand-in's
/// forwarding).
pub(crate) fn relay_plain(
    source: &mut impl BufRead,
    framing: Framing,
    sink: &mut impl Write,
) -> io::Result<()> {
    relay_body(source, framing, sink, &BodyFaults::default()).map(|_| ())
}

/// Copies a body from `source` to `sink` in the same framing, applying `faults` by offset.
pub(super) fn relay_body(
    source: &mut impl BufRead,
    framing: Framing,
    sink: &mut impl Write,
    faults: &BodyFaults,
) -> io::Result<RelayEnd> {
    let chunked = framing == Framing::Chunked;
    let mut relay = FaultyRelay {
        sink,
        chunked,
        offset: 0,
        faults,
        stalled: false,
    };
    if relay.cut_due(0) {
        return Ok(RelayEnd::Cut(faults.cut.expect("cut_due implies a cut").1));
    }
    let mut buffer = vec![0u8; 64 * 1024];
    match framing {
        Framing::Empty => {}
        Framing::Length(length) => {
            let short = "body shorter than its Content-Length";
            if let Some(cut) = relay.send_exactly(source, length, &mut buffer, short)? {
                return Ok(RelayEnd::Cut(cut));
            }
        }
        Framing::UntilClose => loop {
            let read = source.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            if let Some(cut) = relay.send(&mut buffer[..read])? {
                return Ok(RelayEnd::Cut(cut));
            }
        },
        Framing::Chunked => loop {
            let mut size_line = String::new();
            source.read_line(&mut size_line)?;
            let size_text = size_line.split(';').next().unwrap_or_default().trim();
            let size = u64::from_str_radix(size_text, 16).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad chunk size {size_text:?}"),
                )
            })?;
            if size == 0 {
                // Trailer section: lines until an empty one (trailers are dropped).
                loop {
                    let mut line = String::new();
                    if source.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let short = "chunked body ended inside a chunk";
            if let Some(cut) = relay.send_exactly(source, size, &mut buffer, short)? {
                return Ok(RelayEnd::Cut(cut));
            }
            let mut crlf = [0u8; 2];
            source.read_exact(&mut crlf)?;
        },
    }
    // A cut past the end of a shorter-than-expected body still happens, before the terminator.
    if let Some((_, cut)) = faults.cut {
        return Ok(RelayEnd::Cut(cut));
    }
    if chunked {
        relay.sink.write_all(b"0\r\n\r\n")?;
    }
    Ok(RelayEnd::Complete)
}

struct FaultyRelay<'a, W: Write> {
    sink: &'a mut W,
    chunked: bool,
    offset: u64,
    faults: &'a BodyFaults,
    stalled: bool,
}

impl<W: Write> FaultyRelay<'_, W> {
    /// Relays the next `length` bytes of `source` (a body of known length, or one chunk), read
    /// through `buffer`; a source that ends first is an error saying `short`.
    fn send_exactly(
        &mut self,
        source: &mut impl BufRead,
        mut length: u64,
        buffer: &mut [u8],
        short: &str,
    ) -> io::Result<Option<Cut>> {
        while length > 0 {
            let want = length.min(buffer.len() as u64) as usize;
            let read = source.read(&mut buffer[..want])?;
            if read == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, short));
            }
            length -= read as u64;
            if let Some(cut) = self.send(&mut buffer[..read])? {
                return Ok(Some(cut));
            }
        }
        Ok(None)
    }

    fn cut_due(&self, end: u64) -> bool {
        self.faults
            .cut
            .is_some_and(|(at, _)| at <= end && at >= self.offset)
    }

    fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if self.chunked {
            write!(self.sink, "{:x}\r\n", data.len())?;
            self.sink.write_all(data)?;
            self.sink.write_all(b"\r\n")?;
        } else {
            self.sink.write_all(data)?;
        }
        self.offset += data.len() as u64;
        Ok(())
    }

    /// Sends `data` (which starts at `self.offset`), applying any fault that falls inside it.
    fn send(&mut self, data: &mut [u8]) -> io::Result<Option<Cut>> {
        let start = self.offset;
        let end = start + data.len() as u64;
        if let Some(at) = self.faults.corrupt_at {
            if (start..end).contains(&at) {
                data[(at - start) as usize] ^= 0xff;
            }
        }
        if let Some((at, cut)) = self.faults.cut {
            if (start..end).contains(&at) {
                self.write_data(&data[..(at - start) as usize])?;
                return Ok(Some(cut));
            }
        }
        if let Some((at, duration)) = self.faults.stall {
            if !self.stalled && (start..end).contains(&at) {
                let split = (at - start) as usize;
                self.write_data(&data[..split])?;
                self.sink.flush()?;
                std::thread::sleep(duration);
                self.stalled = true;
                return self.write_data(&data[split..]).map(|()| None);
            }
        }
        self.write_data(data)?;
        Ok(None)
    }
}
