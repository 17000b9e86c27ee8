//! CSV records framed by physical lines: every record knows the physical line it starts on, and a
//! quoted field that runs away over line breaks is caught instead of silently merging lines.
//!
//! The `csv` crate's reader counts only `\n` (so a CR-only file is all "line 1"), dates a record
//! from before the blank lines and the `\n` of a CRLF that precede it, and does not report a
//! quoted field that never closes. This reader drives `csv_core` itself over its own buffer, so
//! it sees the raw bytes of each record: it counts line breaks (LF, CRLF or a lone CR) as it
//! goes, one `memchr2` scan per record, and keeps a record's bytes until the record is decided.
//!
//! # The rule for quoted line breaks
//! A quoted field may hold line breaks (a description typed on two lines). A record that spans
//! several physical lines is kept only when
//! - it has the header's number of fields,
//! - its quotes are well formed (a field's closing quote is followed by a delimiter, a line break
//!   or the end of the file, and every quote that opens is closed), and
//! - none of its later lines would be a whole record on its own (have the header's number of
//!   fields when read alone), which is what a runaway quote that swallowed records looks like.
//!
//! Otherwise the quote that opened on its first line is a runaway: [`Framed::UnclosedQuote`]
//! names that line, nothing of the record is kept, and reading starts again at the next physical
//! line, so that each following line is read as a record of its own. A record longer than
//! [`MAX_RECORD_BYTES`] is decided the same way (memory stays bounded whatever the file holds).

use std::io::{self, Read};
use std::ops::Range;

use csv_core::ReadRecordResult;

/// Longest record (raw bytes) read as one. A Sage record is a few hundred bytes; a longer one
/// spanning lines is a runaway quote, a longer single line is [`Framed::TooLong`].
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// Bytes read from the file at a time.
const READ_CHUNK: usize = 256 * 1024;

/// What [`RecordReader::read`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framed {
    /// A record; its fields are [`RecordReader::field`].
    Record,
    /// A quoted field opened on the record's first line is not closed where a record could end
    /// (see the module doc). No field is kept; the next read starts on the following line.
    UnclosedQuote,
    /// One physical line longer than [`MAX_RECORD_BYTES`]. No field is kept.
    TooLong,
}

/// Reads CSV records (comma, double quote, `""` escapes) with their physical line numbers.
pub struct RecordReader<R> {
    src: R,
    // Boxed: the parser holds its transition table inline (hundreds of bytes).
    core: Box<csv_core::Reader>,
    buf: Vec<u8>,
    /// Next byte to parse.
    pos: usize,
    /// End of the bytes read into `buf`.
    end: usize,
    /// Start of the bytes kept across refills (the record being read).
    mark: usize,
    eof: bool,
    /// Physical line (1-based) of `buf[pos]`.
    line: u64,
    /// The byte before `buf[pos]` was a `\r` (a `\n` now is the second half of a CRLF).
    prev_cr: bool,
    fields: Vec<u8>,
    ends: Vec<usize>,
    n_fields: usize,
    record_line: u64,
    record_lines: u64,
    /// Fields a record must have (the header's), once known.
    expected: Option<usize>,
    started: bool,
}

impl<R: Read> RecordReader<R> {
    /// A reader over `src`; the first record read is the header.
    pub fn new(src: R) -> Self {
        RecordReader {
            src,
            core: Box::new(csv_core::Reader::new()),
            buf: vec![0; READ_CHUNK],
            pos: 0,
            end: 0,
            mark: 0,
            eof: false,
            line: 1,
            prev_cr: false,
            fields: vec![0; 4096],
            ends: vec![0; 64],
            n_fields: 0,
            record_line: 0,
            record_lines: 0,
            expected: None,
            started: false,
        }
    }

    /// The number of fields every record must have (the header's); used to tell a legitimate
    /// quoted line break from a runaway quote.
    pub fn expect_fields(&mut self, n: usize) {
        self.expected = Some(n);
    }

    /// Physical line the last record starts on.
    pub fn record_line(&self) -> u64 {
        self.record_line
    }

    /// Physical lines the last record spans (1 for a record without a quoted line break).
    pub fn record_lines(&self) -> u64 {
        self.record_lines
    }

    /// Fields of the last record.
    pub fn len(&self) -> usize {
        self.n_fields
    }

    /// True when the last record has no field (never, for a [`Framed::Record`]).
    pub fn is_empty(&self) -> bool {
        self.n_fields == 0
    }

    /// Every field of the last record, end to end (one UTF-8 check covers them all).
    pub fn all_fields(&self) -> &[u8] {
        match self.n_fields {
            0 => &[],
            n => &self.fields[..self.ends[n - 1]],
        }
    }

    /// Where field `i` of the last record lies in [`Self::all_fields`].
    pub fn field_range(&self, i: usize) -> Option<Range<usize>> {
        if i >= self.n_fields {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(start..self.ends[i])
    }

    /// Field `i` of the last record.
    pub fn field(&self, i: usize) -> Option<&[u8]> {
        self.field_range(i).map(|r| &self.fields[r])
    }

    /// Read more input, keeping `buf[mark..end]`. False at the end of the input.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.mark > 0 {
            self.buf.copy_within(self.mark..self.end, 0);
            self.pos -= self.mark;
            self.end -= self.mark;
            self.mark = 0;
        }
        if self.end == self.buf.len() {
            let grown = self.buf.len() * 2;
            self.buf.resize(grown, 0);
        }
        loop {
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    if !self.started {
                        self.started = true;
                        // A UTF-8 byte order mark is no part of the first field.
                        if self.buf[..self.end].starts_with(b"\xef\xbb\xbf") {
                            self.pos = 3;
                            self.mark = 3;
                        }
                    }
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Skip the line breaks before a record (blank lines), counting them. False at the end.
    fn skip_blank_lines(&mut self) -> io::Result<bool> {
        loop {
            while self.pos < self.end {
                match self.buf[self.pos] {
                    b'\n' => {
                        if !self.prev_cr {
                            self.line += 1;
                        }
                        self.prev_cr = false;
                    }
                    b'\r' => {
                        self.line += 1;
                        self.prev_cr = true;
                    }
                    _ => {
                        self.prev_cr = false;
                        return Ok(true);
                    }
                }
                self.pos += 1;
            }
            self.mark = self.pos;
            if !self.fill()? {
                return Ok(false);
            }
        }
    }

    /// Read the next record. None at the end of the input.
    pub fn read(&mut self) -> io::Result<Option<Framed>> {
        if !self.skip_blank_lines()? {
            return Ok(None);
        }
        self.mark = self.pos;
        self.record_line = self.line;
        self.record_lines = 1;
        self.n_fields = 0;
        let (mut outlen, mut endlen) = (0, 0);
        let at_eof = loop {
            if self.pos == self.end && !self.eof {
                if self.pos - self.mark > MAX_RECORD_BYTES {
                    return self.overlong().map(Some);
                }
                self.fill()?;
                continue;
            }
            let at_eof = self.pos == self.end;
            let (res, nin, nout, nend) = self.core.read_record(
                &self.buf[self.pos..self.end],
                &mut self.fields[outlen..],
                &mut self.ends[endlen..],
            );
            self.pos += nin;
            outlen += nout;
            endlen += nend;
            match res {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    let grown = self.fields.len() * 2;
                    self.fields.resize(grown, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let grown = self.ends.len() * 2;
                    self.ends.resize(grown, 0);
                }
                ReadRecordResult::Record => break at_eof,
                ReadRecordResult::End => return Ok(None),
            }
        };
        self.n_fields = endlen;
        let raw = &self.buf[self.mark..self.pos];
        // The parser drops only delimiters, the line break that ends the record, and quotes. A
        // record that lost nothing else had no quote, so it is one line: no need to look for
        // line breaks inside it (the usual record, at no cost).
        let terminator = usize::from(!at_eof);
        if raw.len() == outlen + endlen.saturating_sub(1) + terminator
            && raw.len() <= MAX_RECORD_BYTES
        {
            self.line += terminator as u64;
            self.prev_cr = raw.last() == Some(&b'\r');
            self.mark = self.pos;
            return Ok(Some(Framed::Record));
        }
        let (breaks, first_break_end) = count_breaks(raw);
        if raw.len() > MAX_RECORD_BYTES {
            // Read whole in a few large reads, past the limit.
            self.n_fields = 0;
            if let Some(after) = first_break_end.filter(|_| at_eof || breaks > 1) {
                self.restart_at(self.mark + after);
                return Ok(Some(Framed::UnclosedQuote));
            }
            self.line += breaks;
            self.prev_cr = raw.last() == Some(&b'\r');
            self.mark = self.pos;
            return Ok(Some(Framed::TooLong));
        }
        // A record ended by its line break holds that break; one ended by the end of the file
        // holds only breaks of its own (a quoted field that swallowed the last line break).
        let inner = if at_eof {
            breaks
        } else {
            breaks.saturating_sub(1)
        };
        let whole = if inner == 0 {
            !at_eof || scan(raw).well_formed
        } else {
            self.is_whole_multi_line(raw)
        };
        if whole {
            self.record_lines = inner + 1;
            self.line += breaks;
            self.prev_cr = raw.last() == Some(&b'\r');
            self.mark = self.pos;
            return Ok(Some(Framed::Record));
        }
        self.n_fields = 0;
        match first_break_end {
            Some(after) => self.restart_at(self.mark + after),
            // An unclosed quote on the last line, without a line break after it.
            None => {
                self.mark = self.pos;
                self.core.reset();
            }
        }
        Ok(Some(Framed::UnclosedQuote))
    }

    /// Give up the record being read and read on from `pos`, the start of its second line.
    fn restart_at(&mut self, pos: usize) {
        self.pos = pos;
        self.mark = pos;
        self.line = self.record_line + 1;
        self.prev_cr = self.buf[pos - 1] == b'\r';
        self.core.reset();
    }

    /// A record spanning several lines: see the module doc.
    fn is_whole_multi_line(&self, raw: &[u8]) -> bool {
        let Some(expected) = self.expected else {
            return scan(raw).well_formed;
        };
        if self.n_fields != expected || !scan(raw).well_formed {
            return false;
        }
        let mut lines = physical_lines(raw);
        lines.next();
        lines.all(|line| line.is_empty() || scan(line).fields != expected)
    }

    /// The record being read passed [`MAX_RECORD_BYTES`].
    fn overlong(&mut self) -> io::Result<Framed> {
        self.n_fields = 0;
        let raw = &self.buf[self.mark..self.pos];
        if let Some(after) = count_breaks(raw).1 {
            self.restart_at(self.mark + after);
            return Ok(Framed::UnclosedQuote);
        }
        // One line longer than the limit: skip to its end, never holding it.
        self.core.reset();
        loop {
            if let Some(i) = memchr::memchr2(b'\r', b'\n', &self.buf[self.pos..self.end]) {
                self.pos += i;
                self.mark = self.pos;
                self.line = self.record_line;
                self.prev_cr = false;
                return Ok(Framed::TooLong);
            }
            self.pos = self.end;
            self.mark = self.pos;
            if !self.fill()? {
                return Ok(Framed::TooLong);
            }
        }
    }
}

/// Line breaks (LF, CRLF, lone CR) in `raw`, and where the first one ends.
fn count_breaks(raw: &[u8]) -> (u64, Option<usize>) {
    let mut n = 0;
    let mut first = None;
    for i in memchr::memchr2_iter(b'\r', b'\n', raw) {
        if raw[i] == b'\n' && i > 0 && raw[i - 1] == b'\r' {
            continue; // the second half of a CRLF
        }
        n += 1;
        if first.is_none() {
            let crlf = raw[i] == b'\r' && raw.get(i + 1) == Some(&b'\n');
            first = Some(i + 1 + usize::from(crlf));
        }
    }
    (n, first)
}

/// The physical lines of `raw`, without their line breaks.
fn physical_lines(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(raw);
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr::memchr2(b'\r', b'\n', r) {
            Some(i) => {
                let crlf = r[i] == b'\r' && r.get(i + 1) == Some(&b'\n');
                let next = &r[i + 1 + usize::from(crlf)..];
                rest = (!next.is_empty()).then_some(next);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// What a plain scan of a record's bytes shows about its quoting.
struct Scan {
    /// Fields, counted as the csv parser would (line breaks inside quotes included).
    fields: usize,
    /// Every opened quote closes, and every closing quote is followed by a delimiter, a line
    /// break or the end.
    well_formed: bool,
}

fn scan(raw: &[u8]) -> Scan {
    #[derive(PartialEq)]
    enum S {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let mut s = S::FieldStart;
    let mut fields = 1;
    let mut well_formed = true;
    for &b in raw {
        let at_end = b == b',' || b == b'\r' || b == b'\n';
        s = match s {
            S::FieldStart | S::Unquoted if at_end => {
                fields += usize::from(b == b',');
                S::FieldStart
            }
            S::FieldStart if b == b'"' => S::Quoted,
            S::FieldStart | S::Unquoted => S::Unquoted,
            S::Quoted if b == b'"' => S::QuoteInQuoted,
            S::Quoted => S::Quoted,
            S::QuoteInQuoted if b == b'"' => S::Quoted,
            S::QuoteInQuoted if at_end => {
                fields += usize::from(b == b',');
                S::FieldStart
            }
            S::QuoteInQuoted => {
                // Text after a closing quote: the parser keeps it, but the quote was not
                // where a field could end.
                well_formed = false;
                S::Unquoted
            }
        };
    }
    Scan {
        fields,
        well_formed: well_formed && s != S::Quoted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that hands out at most 1000 bytes a read, as a pipe might.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = out.len().min(self.0.len()).min(1000);
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// (event, first line, lines spanned, fields) of every record of `text`, read in one go and
    /// in small reads (which must agree).
    fn frame(text: &[u8], expected: usize) -> Vec<(Framed, u64, u64, Vec<String>)> {
        let whole = frame_from(text, expected);
        assert_eq!(frame_from(Trickle(text), expected), whole);
        whole
    }

    fn frame_from(src: impl Read, expected: usize) -> Vec<(Framed, u64, u64, Vec<String>)> {
        let mut r = RecordReader::new(src);
        let mut out = Vec::new();
        let mut first = true;
        while let Some(f) = r.read().expect("read") {
            if first {
                r.expect_fields(expected);
                first = false;
            }
            let fields = (0..r.len())
                .map(|i| String::from_utf8_lossy(r.field(i).unwrap_or_default()).into_owned())
                .collect();
            out.push((f, r.record_line(), r.record_lines(), fields));
        }
        out
    }

    fn lines_of(text: &[u8]) -> Vec<u64> {
        frame(text, 2).iter().map(|r| r.1).collect()
    }

    #[test]
    fn lines_are_physical_for_lf_crlf_and_cr_with_blank_lines() {
        for eol in ["\n", "\r\n", "\r"] {
            let text = ["A,B", "1,x", "", "2,y", "", "", "3,z", ""].join(eol);
            assert_eq!(lines_of(text.as_bytes()), vec![1, 2, 4, 7], "{eol:?}");
        }
        // Mixed endings, and a last line without a line break.
        assert_eq!(lines_of(b"A,B\r\n1,x\n\r\n2,y\r3,z"), vec![1, 2, 4, 5]);
    }

    #[test]
    fn a_quoted_line_break_is_one_record_dated_from_its_first_line() {
        for eol in ["\n", "\r\n", "\r"] {
            let text = format!("A,B{eol}1,\"two{eol}lines\"{eol}2,y{eol}");
            let got = frame(text.as_bytes(), 2);
            assert_eq!(got.len(), 3, "{eol:?}");
            assert_eq!(got[1].0, Framed::Record);
            assert_eq!((got[1].1, got[1].2), (2, 2));
            assert_eq!(got[1].3, vec!["1".to_string(), format!("two{eol}lines")]);
            assert_eq!((got[2].1, got[2].3[0].as_str()), (4, "2"));
        }
    }

    #[test]
    fn a_runaway_quote_is_named_and_every_later_line_is_read_again() {
        // The quote opened on line 3 would swallow lines 3-5 (closing on line 5's quote).
        let text = b"A,B,C\n1,x,a\n2,\"open,b\n3,y,c\n4,\"z\",d\n5,w,e\n";
        let got = frame(text, 3);
        let summary: Vec<(Framed, u64, usize)> =
            got.iter().map(|r| (r.0, r.1, r.3.len())).collect();
        assert_eq!(
            summary,
            vec![
                (Framed::Record, 1, 3),
                (Framed::Record, 2, 3),
                (Framed::UnclosedQuote, 3, 0),
                (Framed::Record, 4, 3),
                (Framed::Record, 5, 3),
                (Framed::Record, 6, 3),
            ]
        );
    }

    #[test]
    fn a_runaway_quote_with_the_right_field_count_is_still_caught() {
        // Line 3's quote closes at the end of line 4's second field: 3 fields in all, but line
        // 4 is a whole record of its own.
        let text = b"A,B,C\n1,x,a\n2,\"open,b\n3,12\",c\n4,w,e\n";
        let got = frame(text, 3);
        let summary: Vec<(Framed, u64)> = got.iter().map(|r| (r.0, r.1)).collect();
        assert_eq!(
            summary,
            vec![
                (Framed::Record, 1),
                (Framed::Record, 2),
                (Framed::UnclosedQuote, 3),
                (Framed::Record, 4),
                (Framed::Record, 5),
            ]
        );
    }

    #[test]
    fn an_unclosed_quote_on_the_last_line_keeps_nothing() {
        for text in [
            &b"A,B\n1,x\n2,\"open,SECRET\n"[..],
            b"A,B\n1,x\n2,\"open,SECRET",
        ] {
            let got = frame(text, 2);
            assert_eq!(got.len(), 3);
            assert_eq!((got[2].0, got[2].1), (Framed::UnclosedQuote, 3));
            assert!(got[2].3.is_empty());
        }
    }

    #[test]
    fn a_runaway_to_the_end_of_a_long_file_is_bounded() {
        let mut text = b"A,B\n1,\"open\n".to_vec();
        let n = MAX_RECORD_BYTES / 4;
        for i in 0..n {
            text.extend_from_slice(format!("{},xxxx\n", i % 1000).as_bytes());
        }
        let got = frame(&text, 2);
        assert_eq!((got[1].0, got[1].1), (Framed::UnclosedQuote, 2));
        assert_eq!(got.len(), 2 + n);
        assert!(got[2..]
            .iter()
            .all(|r| r.0 == Framed::Record && r.3.len() == 2));
        assert_eq!(got.last().map(|r| r.1), Some(2 + n as u64));
    }

    #[test]
    fn a_line_longer_than_the_limit_is_skipped_whole() {
        let mut text = b"A,B\n1,".to_vec();
        text.extend(std::iter::repeat_n(b'x', MAX_RECORD_BYTES + READ_CHUNK * 2));
        text.extend_from_slice(b"\r\n2,y\n");
        let got = frame(&text, 2);
        let summary: Vec<(Framed, u64)> = got.iter().map(|r| (r.0, r.1)).collect();
        assert_eq!(
            summary,
            vec![
                (Framed::Record, 1),
                (Framed::TooLong, 2),
                (Framed::Record, 3)
            ]
        );
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_header() {
        let got = frame(b"\xef\xbb\xbfA,B\n1,x\n", 2);
        assert_eq!(got[0].3, vec!["A".to_string(), "B".to_string()]);
        assert_eq!(got[1].1, 2);
    }
}
