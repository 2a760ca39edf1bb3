//! A board's JSON, entity tag and gzip made by parts, so that a change re-serialises and
//! re-compresses the few project rows it touched rather than the whole 120 KB board.
//!
//! The JSON is cut into segments: a head (community, members, meetings, up to the project list),
//! chunks of project rows, and a tail (requests, totals, recent). Chunks end where a row's id
//! says so (a byte of the id, so an inserted or removed row moves no other boundary) or at
//! [`MAX_ROWS`], and [`Parts`] keeps each community's chunks from one rendering to the next: a
//! chunk whose rows are equal is taken as it is, bytes, digest and compressed form.
//!
//! Each segment is compressed on its own as raw deflate ending in a sync flush (the tail in the
//! final block), so the segments' deflate streams joined are one deflate stream, and the gzip
//! trailer's CRC-32 is the segments' CRCs combined; that is how parallel gzip tools join their
//! blocks. The entity tag is a SHA-256 over the segments' digests: the cut depends only on the
//! board, so the same board has the same tag in every process.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, FlushCompress, Status};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Board, ProjectRow};
use crate::ProjectionError;

/// A chunk ends after this many rows even where no row's id ends it, so a board of unlucky ids
/// still changes in parts.
const MAX_ROWS: usize = 96;

/// A row whose id's last byte is a multiple of this ends its chunk: ~32 rows (~8 KB) a chunk,
/// small enough that a change recompresses little and large enough to compress well (a board
/// of 120 KB in chunks at level 6 is ~10 % larger than compressed whole, and as large as it was
/// whole at the fastest level).
const CUT_EVERY: u8 = 32;

/// The gzip header: deflate, no name or time, unknown system (RFC 1952).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// One community's chunks of project rows as last rendered, by their first row's id.
#[derive(Debug, Default)]
pub struct Parts {
    chunks: HashMap<Uuid, Arc<Chunk>>,
}

/// Rows of the project list and their part of the JSON.
#[derive(Debug)]
struct Chunk {
    /// Whether the chunk's JSON starts with the comma after the row before it.
    leading: bool,
    rows: Vec<ProjectRow>,
    segment: Arc<Segment>,
}

/// A run of the board's JSON, with what is made of it once.
#[derive(Debug)]
pub struct Segment {
    json: Bytes,
    digest: [u8; 32],
    /// The board's last segment: its deflate stream ends the whole stream.
    last: bool,
    /// Chunks of rows are compressed well, as they are compressed rarely; the head and tail,
    /// made with every rendering, fast.
    level: Compression,
    deflated: OnceLock<Option<Deflated>>,
}

/// A segment compressed on its own, and the CRC-32 of its bytes.
#[derive(Debug)]
struct Deflated {
    bytes: Bytes,
    crc: crc32fast::Hasher,
}

/// A rendering's segments in order.
#[derive(Debug)]
pub struct Rendered {
    pub segments: Vec<Arc<Segment>>,
    pub json: Bytes,
    pub etag: String,
}

impl Segment {
    fn new(json: Vec<u8>, last: bool, level: Compression) -> Arc<Self> {
        Arc::new(Self {
            digest: Sha256::digest(&json).into(),
            json: Bytes::from(json),
            last,
            level,
            deflated: OnceLock::new(),
        })
    }

    /// The segment as raw deflate, made by the first caller; `None` if the encoder failed.
    fn deflated(&self) -> Option<&Deflated> {
        self.deflated
            .get_or_init(|| {
                let flush = if self.last {
                    FlushCompress::Finish
                } else {
                    FlushCompress::Sync
                };
                let bytes = deflate(&self.json, self.level, flush)?;
                let mut crc = crc32fast::Hasher::new();
                crc.update(&self.json);
                Some(Deflated {
                    bytes: Bytes::from(bytes),
                    crc,
                })
            })
            .as_ref()
    }
}

/// `input` as raw deflate, ending with `flush`: a sync flush leaves the stream byte-aligned and
/// open, so another segment's stream can follow it.
fn deflate(input: &[u8], level: Compression, flush: FlushCompress) -> Option<Vec<u8>> {
    let mut compress = Compress::new(level, false);
    let mut out = Vec::with_capacity(input.len() / 3 + 64);
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(1024));
        }
        let consumed = usize::try_from(compress.total_in()).ok()?;
        let status = compress
            .compress_vec(input.get(consumed..)?, &mut out, flush)
            .ok()?;
        let done = match status {
            Status::StreamEnd => true,
            // Flushed once all input is in and the output had room to spare.
            Status::Ok | Status::BufError => {
                !matches!(flush, FlushCompress::Finish)
                    && usize::try_from(compress.total_in()).ok()? == input.len()
                    && out.len() < out.capacity()
            }
        };
        if done {
            return Some(out);
        }
    }
}

impl Parts {
    /// Renders `board`, taking every chunk whose rows are unchanged from the rendering before,
    /// and keeps this rendering's chunks for the next.
    pub fn render(&mut self, board: &Board) -> Result<Rendered, ProjectionError> {
        let mut head = Vec::with_capacity(4096);
        head.extend_from_slice(b"{\"community\":");
        write(&mut head, &board.community)?;
        head.extend_from_slice(b",\"members\":");
        write(&mut head, &board.members)?;
        head.extend_from_slice(b",\"meetings\":");
        write(&mut head, &board.meetings)?;
        head.extend_from_slice(b",\"projects\":[");
        let mut segments = vec![Segment::new(head, false, Compression::fast())];

        let mut chunks = HashMap::with_capacity(self.chunks.len());
        for (index, rows) in chunked(&board.projects).enumerate() {
            let leading = index > 0;
            let first = rows[0].project_id;
            let chunk = match self.chunks.get(&first) {
                Some(held) if held.leading == leading && held.rows == rows => Arc::clone(held),
                _ => Arc::new(Chunk::new(rows, leading)?),
            };
            segments.push(Arc::clone(&chunk.segment));
            chunks.insert(first, chunk);
        }
        self.chunks = chunks;

        let mut tail = Vec::with_capacity(8192);
        tail.extend_from_slice(b"],\"requests\":");
        write(&mut tail, &board.requests)?;
        tail.extend_from_slice(b",\"totals\":");
        write(&mut tail, &board.totals)?;
        tail.extend_from_slice(b",\"recent\":");
        write(&mut tail, &board.recent)?;
        tail.push(b'}');
        segments.push(Segment::new(tail, true, Compression::fast()));

        let length = segments.iter().map(|s| s.json.len()).sum();
        let mut json = BytesMut::with_capacity(length);
        let mut tag = Sha256::new();
        for segment in &segments {
            json.put_slice(&segment.json);
            tag.update(segment.digest);
        }
        // Half of a SHA-256: collisions between two versions of one board are out of reach.
        let etag = format!("\"{}\"", hex::encode(&tag.finalize()[..16]));
        Ok(Rendered {
            segments,
            json: json.freeze(),
            etag,
        })
    }
}

impl Chunk {
    fn new(rows: &[ProjectRow], leading: bool) -> Result<Self, ProjectionError> {
        let mut json = Vec::with_capacity(rows.len() * 320);
        for (index, row) in rows.iter().enumerate() {
            if leading || index > 0 {
                json.push(b',');
            }
            write(&mut json, row)?;
        }
        Ok(Self {
            leading,
            rows: rows.to_vec(),
            segment: Segment::new(json, false, Compression::default()),
        })
    }
}

/// The project rows cut into chunks: after a row whose id ends with a multiple of
/// [`CUT_EVERY`], or after [`MAX_ROWS`].
fn chunked(rows: &[ProjectRow]) -> impl Iterator<Item = &[ProjectRow]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .iter()
            .take(MAX_ROWS)
            .position(|row| row.project_id.as_bytes()[15] % CUT_EVERY == 0)
            .map_or(rest.len().min(MAX_ROWS), |at| at + 1);
        let (chunk, after) = rest.split_at(end);
        rest = after;
        Some(chunk)
    })
}

fn write<T: serde::Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> Result<(), ProjectionError> {
    serde_json::to_writer(out, value)
        .map_err(|e| ProjectionError::Storage(format!("board JSON: {e}")))
}

/// The segments joined into one gzip member; `None` if a segment could not be compressed.
pub fn gzip(segments: &[Arc<Segment>]) -> Option<Bytes> {
    let mut crc = crc32fast::Hasher::new();
    let mut deflated = Vec::with_capacity(segments.len());
    for segment in segments {
        let part = segment.deflated()?;
        crc.combine(&part.crc);
        deflated.push(&part.bytes);
    }
    let length: usize = deflated.iter().map(|d| d.len()).sum();
    let size: usize = segments.iter().map(|s| s.json.len()).sum();
    let mut out = BytesMut::with_capacity(GZIP_HEADER.len() + length + 8);
    out.put_slice(&GZIP_HEADER);
    for part in deflated {
        out.put_slice(part);
    }
    out.put_u32_le(crc.finalize());
    // ISIZE is the input's length modulo 2^32 (RFC 1952).
    out.put_u32_le((size & 0xffff_ffff) as u32);
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use domain::values::{MemberKind, Theme};

    use super::*;
    use crate::projectors::board::{
        Claimant, CommunityView, MeetingsView, MemberView, OpenRequest, Recent, RequestsView,
        Totals,
    };

    fn row(n: u128) -> ProjectRow {
        // Ids spread like real ones: the last byte decides the cut.
        let id = Uuid::from_u128(n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
        ProjectRow {
            project_id: id,
            title: format!("项目 \"{n}\" 为居民办实事"),
            theme: Theme::LivingEnvironment,
            status: if n % 3 == 0 { "claimed" } else { "proposed" }.to_string(),
            claimant: (n % 3 == 0).then(|| Claimant {
                unit_id: Uuid::from_u128(7),
                name: "区市场监督管理局".to_string(),
            }),
            claimed_at: (n % 3 == 0).then(|| "2018-04-25T01:30:00Z".to_string()),
            meeting_id: None,
        }
    }

    fn board(rows: impl IntoIterator<Item = u128>) -> Board {
        let mut projects: Vec<ProjectRow> = rows.into_iter().map(row).collect();
        projects.sort_by_key(|p| p.project_id);
        Board {
            community: CommunityView {
                id: Uuid::from_u128(1),
                name: "三江社区".to_string(),
                committee: Some("三江社区党委".to_string()),
                district_id: Uuid::from_u128(2),
            },
            members: vec![MemberView {
                unit_id: Uuid::from_u128(7),
                name: "区市场监督管理局".to_string(),
                kind: MemberKind::Jurisdiction,
                projects_claimed: 3,
                activities: 1,
            }],
            meetings: MeetingsView {
                last_held: Some("2018-04-02T01:00:00Z".to_string()),
                next_scheduled: None,
                regular_this_quarter: true,
            },
            projects,
            requests: RequestsView {
                open: vec![OpenRequest {
                    request_id: Uuid::from_u128(9),
                    unit_id: Uuid::from_u128(7),
                    unit_name: None,
                    title: "食品安全宣传场地".to_string(),
                    raised_at: "2018-05-01T00:00:00Z".to_string(),
                }],
                resolved: 2,
            },
            totals: Totals {
                participants: 300,
                ..Totals::default()
            },
            recent: vec![Recent {
                position: 42,
                occurred_at: "2018-04-25T01:30:00Z".to_string(),
                summary: "认领了项目".to_string(),
            }],
        }
    }

    fn inflated(gzip: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gzip)
            .read_to_end(&mut out)
            .expect("a valid gzip member");
        out
    }

    #[test]
    fn the_parts_joined_are_the_board_as_serde_writes_it_and_their_gzip_inflates_to_it() {
        for rows in [0, 1, 2, 17, 470] {
            let board = board(0..rows);
            let rendered = Parts::default().render(&board).expect("renders");
            let whole = serde_json::to_vec(&board).expect("serialises");
            assert_eq!(rendered.json, whole, "{rows} rows");
            let gzip = gzip(&rendered.segments).expect("compresses");
            assert_eq!(inflated(&gzip), whole, "{rows} rows");
            if rows >= 470 {
                // Compressed in parts of ~4 KB, a board gives up little against one piece.
                let mut one = flate2::write::GzEncoder::new(Vec::new(), Compression::fast());
                std::io::Write::write_all(&mut one, &whole).expect("in memory");
                let one = one.finish().expect("in memory");
                eprintln!(
                    "{rows} rows: {} bytes, {} in parts, {} whole",
                    whole.len(),
                    gzip.len(),
                    one.len()
                );
                assert!(gzip.len() * 4 < one.len() * 5, "{rows} rows");
            }
        }
    }

    #[test]
    fn a_changed_row_makes_one_new_chunk_and_the_others_are_taken_as_they_were() {
        let mut parts = Parts::default();
        let before = board(0..470);
        let first = parts.render(&before).expect("renders");
        let mut after = before.clone();
        after.projects[200].status = "completed".to_string();
        let second = parts.render(&after).expect("renders");

        assert_eq!(first.segments.len(), second.segments.len());
        let new: Vec<usize> = (0..first.segments.len())
            .filter(|&i| !Arc::ptr_eq(&first.segments[i], &second.segments[i]))
            .collect();
        // The head and the tail are made each time; of the chunks, only the changed row's.
        assert_eq!(new.len(), 3, "{new:?}");
        assert_eq!(new[0], 0);
        assert_eq!(new[2], second.segments.len() - 1);
        assert_eq!(second.json, serde_json::to_vec(&after).expect("serialises"));
        assert_eq!(
            inflated(&gzip(&second.segments).expect("compresses")),
            second.json
        );
    }

    #[test]
    fn an_inserted_row_moves_no_other_chunk() {
        let mut parts = Parts::default();
        let first = parts.render(&board(0..300)).expect("renders");
        let grown = board((0..300).chain([1_000]));
        let second = parts.render(&grown).expect("renders");
        let kept = second
            .segments
            .iter()
            .filter(|s| first.segments.iter().any(|f| Arc::ptr_eq(f, s)))
            .count();
        // All but the head, the tail and the chunk the row went into.
        assert_eq!(kept, second.segments.len() - 3);
        assert_eq!(second.json, serde_json::to_vec(&grown).expect("serialises"));
    }

    #[test]
    fn the_same_board_has_the_same_tag_however_it_was_made_and_a_changed_one_another() {
        let mut parts = Parts::default();
        let mut board = board(0..100);
        parts.render(&board).expect("renders");
        let held = parts.render(&board).expect("renders");
        let fresh = Parts::default().render(&board).expect("renders");
        assert_eq!(held.etag, fresh.etag);
        assert_eq!(held.json, fresh.json);

        board.projects[50].title.push('!');
        let changed = parts.render(&board).expect("renders");
        assert_ne!(changed.etag, held.etag);
        assert_eq!(
            changed.etag,
            Parts::default().render(&board).expect("renders").etag
        );
    }

    #[test]
    fn chunks_end_at_a_cut_id_or_at_the_most_rows_a_chunk_takes() {
        let board = board(0..470);
        let chunks: Vec<&[ProjectRow]> = chunked(&board.projects).collect();
        assert_eq!(chunks.concat(), board.projects);
        for chunk in &chunks {
            assert!(!chunk.is_empty() && chunk.len() <= MAX_ROWS);
            let (last, before) = chunk.split_last().expect("not empty");
            assert!(before
                .iter()
                .all(|row| row.project_id.as_bytes()[15] % CUT_EVERY != 0));
            let _ = last;
        }
        assert!(chunks.len() > 470 / MAX_ROWS, "{} chunks", chunks.len());
    }
}
