//! The usage journal: every finished request's usage is appended to a local file before its
//! answer completes, so a crash of the process (`kill -9`, a panic that aborts, the OOM killer)
//! loses nothing that was served. It costs one `write` per request and no database write.
//!
//! The journal is a directory of numbered segments (`segment-<n>.log`, one JSON line per
//! request) and a `journal-id` file. Each flush closes the current segment and opens the next;
//! the flush's transaction that writes the rollups also records, in `usage_journal_marks`, that
//! this journal's segments up to that number are applied. Only after the commit are those files
//! deleted. At start-up the segments above the recorded mark are read back into the ledger (a
//! crash between the commit and the deletion leaves segments that are skipped, never billed
//! twice). A closed segment is synced to disk before its usage is written, so a machine crash
//! loses at most the current flush interval. An exclusive lock on the directory keeps two
//! instances from sharing one journal.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::domain::TenantId;
use crate::metering::UsageEvent;

const ID_FILE: &str = "journal-id";
const LOCK_FILE: &str = "lock";

/// One request's usage as a journal line: written from the event's borrowed fields (no copies
/// per request), read back as owned ones (`ReadLine`).
#[derive(Serialize, Deserialize)]
struct Line<T, S> {
    t: T,
    c: S,
    m: S,
    at: DateTime<Utc>,
    s: u16,
    p: u64,
    o: u64,
    a: u64,
    w: u64,
    l: u64,
}

type LineOut<'a> = Line<&'a str, &'a str>;
type ReadLine = Line<TenantId, String>;

impl<'a> LineOut<'a> {
    fn of(e: &'a UsageEvent) -> LineOut<'a> {
        Line {
            t: e.tenant_id.as_str(),
            c: &e.credential_id,
            m: &e.model,
            at: e.at,
            s: e.status,
            p: e.prompt_tokens,
            o: e.completion_tokens,
            a: e.audio_ms,
            w: e.queue_wait_ms,
            l: e.latency_ms,
        }
    }
}

impl ReadLine {
    fn event(self) -> UsageEvent {
        UsageEvent {
            tenant_id: self.t,
            credential_id: self.c,
            model: self.m,
            at: self.at,
            status: self.s,
            prompt_tokens: self.p,
            completion_tokens: self.o,
            audio_ms: self.a,
            queue_wait_ms: self.w,
            latency_ms: self.l,
        }
    }
}

/// An open journal: the directory (locked), its id, and the segment being written.
pub(super) struct Journal {
    dir: PathBuf,
    id: String,
    segment: u64,
    file: File,
    _lock: Flock<File>,
    /// The last append failed (logged once until one succeeds again).
    failing: bool,
    /// The line being written (kept between appends: no allocation per request).
    line: Vec<u8>,
}

/// A segment found at start-up.
pub(super) struct Segment {
    pub(super) number: u64,
    pub(super) path: PathBuf,
}

impl Journal {
    /// Opens (creating it if needed) and locks the journal in `dir`; returns it with the
    /// segments already there, oldest first. New usage goes to a segment after all of them.
    pub(super) fn open(dir: &Path) -> io::Result<(Journal, Vec<Segment>)> {
        std::fs::create_dir_all(dir)?;
        let lock_file = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(LOCK_FILE))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
            io::Error::new(io::ErrorKind::WouldBlock, format!("the usage journal {} is in use by another process ({errno})", dir.display()))
        })?;
        let id_path = dir.join(ID_FILE);
        let id = match std::fs::read_to_string(&id_path) {
            Ok(id) if !id.trim().is_empty() => id.trim().to_owned(),
            Ok(_) => return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} is empty", id_path.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let id = uuid::Uuid::new_v4().to_string();
                let tmp = dir.join(format!("{ID_FILE}.tmp"));
                let mut f = File::create(&tmp)?;
                f.write_all(id.as_bytes())?;
                f.sync_all()?;
                std::fs::rename(&tmp, &id_path)?;
                File::open(dir)?.sync_all()?;
                id
            }
            Err(e) => return Err(e),
        };
        let mut segments = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let number = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("segment-")?.strip_suffix(".log")?.parse::<u64>().ok());
            if let Some(number) = number {
                segments.push(Segment { number, path });
            }
        }
        segments.sort_by_key(|s| s.number);
        let segment = segments.last().map_or(1, |s| s.number + 1);
        let file = open_segment(dir, segment)?;
        Ok((Journal { dir: dir.to_owned(), id, segment, file, _lock: lock, failing: false, line: Vec::with_capacity(512) }, segments))
    }

    pub(super) fn id(&self) -> &str {
        &self.id
    }

    /// Appends one request's usage (one `write`: it is in the kernel's hands when this returns,
    /// so it survives the process). A failure is logged and counted; the usage stays in memory.
    pub(super) fn append(&mut self, event: &UsageEvent) {
        self.line.clear();
        if serde_json::to_writer(&mut self.line, &LineOut::of(event)).is_err() {
            return;
        }
        self.line.push(b'\n');
        match self.file.write_all(&self.line) {
            Ok(()) => self.failing = false,
            Err(e) => {
                metrics::counter!("gatehouse_usage_journal_errors_total").increment(1);
                if !self.failing {
                    tracing::error!(error = %e, dir = %self.dir.display(), "usage journal write failed; usage kept in memory only");
                }
                self.failing = true;
            }
        }
    }

    /// Starts a new segment; returns the one closed (every segment up to it is now complete)
    /// and its file, to be synced before its usage is written.
    pub(super) fn rotate(&mut self) -> io::Result<(u64, File)> {
        let next = open_segment(&self.dir, self.segment + 1)?;
        let closed = std::mem::replace(&mut self.file, next);
        let number = self.segment;
        self.segment += 1;
        Ok((number, closed))
    }
}

fn open_segment(dir: &Path, number: u64) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(dir.join(format!("segment-{number}.log")))
}

/// Deletes the segments up to `number` (their usage is in the database).
pub(super) fn remove_through(dir: &Path, number: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let n =
            path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("segment-")?.strip_suffix(".log")?.parse::<u64>().ok());
        if n.is_some_and(|n| n <= number) {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(error = %e, path = %path.display(), "applied usage journal segment not removed");
            }
        }
    }
}

/// The usage in a segment. A line that does not parse (the last one, cut short by a crash of
/// the machine mid-write) is skipped and logged.
pub(super) fn read_segment(path: &Path) -> io::Result<Vec<UsageEvent>> {
    let reader = io::BufReader::new(File::open(path)?);
    let mut events = Vec::new();
    for (index, line) in reader.split(b'\n').enumerate() {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<ReadLine>(&line) {
            Ok(l) => events.push(l.event()),
            Err(e) => tracing::warn!(error = %e, path = %path.display(), line = index + 1, "unreadable usage journal line skipped"),
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(tokens: u64) -> UsageEvent {
        UsageEvent {
            tenant_id: TenantId::generate(),
            credential_id: "key_1".into(),
            model: "m".into(),
            at: Utc::now(),
            status: 200,
            prompt_tokens: tokens,
            completion_tokens: 1,
            audio_ms: 0,
            queue_wait_ms: 2,
            latency_ms: 3,
        }
    }

    #[test]
    fn segments_rotate_read_back_and_are_removed() {
        let dir = std::env::temp_dir().join(format!("gatehouse-journal-{}", uuid::Uuid::new_v4()));
        let id = {
            let (mut j, found) = Journal::open(&dir).unwrap();
            assert!(found.is_empty());
            j.append(&event(5));
            j.append(&event(6));
            assert_eq!(j.rotate().unwrap().0, 1);
            j.append(&event(7));
            j.id().to_owned()
        };
        // A torn last line (cut mid-write) is skipped.
        std::fs::OpenOptions::new().append(true).open(dir.join("segment-2.log")).unwrap().write_all(b"{\"t\":\"ten_").unwrap();
        let (j, found) = Journal::open(&dir).unwrap();
        assert_eq!(j.id(), id, "the journal keeps its id");
        assert_eq!(found.iter().map(|s| s.number).collect::<Vec<_>>(), vec![1, 2]);
        let tokens = |n: usize| read_segment(&found[n].path).unwrap().iter().map(|e| e.prompt_tokens).collect::<Vec<_>>();
        assert_eq!((tokens(0), tokens(1)), (vec![5, 6], vec![7]));
        assert!(Journal::open(&dir).is_err(), "a second process cannot open a journal in use");
        remove_through(&dir, 2);
        drop(j);
        let (_, found) = Journal::open(&dir).unwrap();
        assert!(found.iter().all(|s| s.number > 2), "only the new empty segment is left");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
