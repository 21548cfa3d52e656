//! Whether the query index file can be trusted after the machine stopped.
//!
//! The index is derived data (its rows are copied from the records) and its
//! commits are not synced: an `fsync` of the index file, 10–24 ms under
//! load at each of its checkpoints, held up the audit log's own `fdatasync`
//! on the same disk, and with it every request waiting for its record to be
//! durable (docs/performance.md). Unsynced, the file is still whole after
//! any process stops, however abruptly: its writes are in the kernel's page
//! cache, which every process of the machine reads. Only when the machine
//! itself stops (power lost, kernel crashed) can the file be torn, some
//! pages new and some old, which could hide records from a query.
//!
//! So the index is trusted only within the boot that wrote it. A small file
//! beside it, `<database>-index-boot`, names that boot (Linux's
//! `/proc/sys/kernel/random/boot_id`), and is made durable before the
//! index is written. A store opened in another boot (or with that file
//! missing or unreadable) removes the index files, and the indexer builds
//! them again from the records. Where the boot cannot be named, the index
//! is synced as before instead.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::StoreError;
use crate::fast::beside;

/// How the index file's commits reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IndexSync {
    /// Not synced: trusted only in the boot that wrote it.
    Unsynced,
    /// Synced at each index checkpoint (the boot cannot be named).
    Synced,
}

/// The file beside the database `db` that names the boot whose processes
/// write its index.
pub(crate) fn marker_path(db: &Path) -> std::path::PathBuf {
    beside(db, "-index-boot")
}

/// The index's files beside the database `db`: the index and its WAL
/// and shared-memory files.
fn index_files(db: &Path) -> [std::path::PathBuf; 3] {
    let index = crate::sqlite::index_path(db);
    [beside(&index, "-wal"), beside(&index, "-shm"), index]
}

/// This machine's boot, or `None` where the system does not name it.
pub(crate) fn current_boot() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_owned())
}

/// Before anything opens the index of the database `db` in `boot`: keeps
/// an index written in this boot, removes one written in another (or in a
/// boot nobody noted), and notes this boot, durably, as the one writing
/// it. Every process opening the database goes through here, one at a
/// time (a lock on the marker), so no process removes an index that one
/// of this boot has open. With `boot` unknown the index is kept and synced.
pub(crate) fn prepare_index(db: &Path, boot: Option<&str>) -> Result<IndexSync, StoreError> {
    let Some(boot) = boot else {
        return Ok(IndexSync::Synced);
    };
    let failed = |what: &str, e: std::io::Error| {
        StoreError::Database(format!(
            "the query index's boot file {}: cannot {what}: {e}",
            marker_path(db).display()
        ))
    };
    let mut marker = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(marker_path(db))
    {
        Ok(marker) => marker,
        // No such folder: no database, no index. Opening the database
        // then fails with SQLite's own words for it.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(IndexSync::Synced),
        Err(e) => return Err(failed("open it", e)),
    };
    // Released when `marker` is closed, at the end of this function.
    marker.lock().map_err(|e| failed("lock it", e))?;
    let mut noted = String::new();
    // A marker that is not text is no boot: the index is rebuilt.
    let _ = marker.read_to_string(&mut noted);
    if noted.trim() == boot {
        return Ok(IndexSync::Unsynced);
    }
    let mut removed = false;
    for file in index_files(db) {
        match std::fs::remove_file(&file) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                let what = format!("remove the index file {}", file.display());
                return Err(failed(&what, e));
            }
        }
    }
    if removed {
        tracing::warn!(
            db = %db.display(),
            "the audit query index was written before the machine last stopped and may not have reached the disk whole: rebuilding it from the records"
        );
    }
    note(&mut marker, boot).map_err(|e| failed("write it", e))?;
    Ok(IndexSync::Unsynced)
}

/// Writes `boot` as the marker's whole content and syncs it: the index is
/// written only after this boot is durably noted, so an index left by a
/// machine that stopped is never taken for this boot's.
fn note(marker: &mut File, boot: &str) -> std::io::Result<()> {
    marker.set_len(0)?;
    marker.seek(SeekFrom::Start(0))?;
    marker.write_all(boot.as_bytes())?;
    marker.sync_all()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Writes `content` into each index file of `db`.
    fn write_index(db: &Path, content: &[u8]) {
        for file in index_files(db) {
            std::fs::write(file, content).unwrap();
        }
    }

    /// Whether the index file itself is there.
    fn index_exists(db: &Path) -> bool {
        crate::sqlite::index_path(db).exists()
    }

    #[test]
    fn an_index_written_in_this_boot_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.db");
        assert_eq!(
            prepare_index(&db, Some("boot-a")).unwrap(),
            IndexSync::Unsynced
        );
        write_index(&db, b"pages");
        assert_eq!(
            prepare_index(&db, Some("boot-a")).unwrap(),
            IndexSync::Unsynced
        );
        for file in index_files(&db) {
            assert_eq!(std::fs::read(file).unwrap(), b"pages");
        }
    }

    #[test]
    fn an_index_written_in_another_boot_is_removed_and_this_boot_noted() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.db");
        prepare_index(&db, Some("boot-a")).unwrap();
        write_index(&db, b"torn pages");
        assert_eq!(
            prepare_index(&db, Some("boot-b")).unwrap(),
            IndexSync::Unsynced
        );
        for file in index_files(&db) {
            assert!(!file.exists(), "{} kept from another boot", file.display());
        }
        assert_eq!(std::fs::read_to_string(marker_path(&db)).unwrap(), "boot-b");
        // Written again in boot b, it is now kept.
        write_index(&db, b"pages");
        prepare_index(&db, Some("boot-b")).unwrap();
        assert!(index_exists(&db));
    }

    #[test]
    fn an_index_with_no_boot_noted_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.db");
        // Made before the marker existed, or the marker was lost with the
        // machine; a marker that is not text names no boot either.
        write_index(&db, b"pages");
        prepare_index(&db, Some("boot-a")).unwrap();
        assert!(!index_exists(&db));
        write_index(&db, b"pages");
        std::fs::write(marker_path(&db), [0xff, 0xfe, b'\n']).unwrap();
        prepare_index(&db, Some("boot-a")).unwrap();
        assert!(!index_exists(&db));
        // A longer boot noted before is wholly replaced.
        std::fs::write(marker_path(&db), "boot-a-and-more").unwrap();
        prepare_index(&db, Some("boot-a")).unwrap();
        assert_eq!(std::fs::read_to_string(marker_path(&db)).unwrap(), "boot-a");
    }

    #[test]
    fn with_no_boot_named_the_index_is_kept_and_synced() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.db");
        write_index(&db, b"pages");
        assert_eq!(prepare_index(&db, None).unwrap(), IndexSync::Synced);
        assert!(index_exists(&db));
    }

    #[test]
    fn in_a_folder_that_does_not_exist_there_is_nothing_to_prepare() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("missing").join("w.db");
        assert_eq!(
            prepare_index(&db, Some("boot-a")).unwrap(),
            IndexSync::Synced
        );
        assert!(!marker_path(&db).exists());
    }

    #[test]
    fn this_machine_names_its_boot() {
        // Linux, where the benchmark and CI run: the index goes unsynced.
        if cfg!(target_os = "linux") {
            let boot = current_boot().unwrap();
            assert_eq!(boot.len(), 36, "{boot}");
            assert_eq!(current_boot().unwrap(), boot);
        }
    }
}
