//! Which boot of the machine writes the read-model file without syncing it, so that a start in a
//! later boot can tell that the file may be torn and must be built again from the log.
//!
//! A server writes its read models with `synchronous = OFF`: a crashed or killed process loses
//! nothing by it (the kernel holds every write and finishes it), but a machine that stops (power,
//! kernel panic, a VM host's crash) loses its page cache in any order, and a checkpoint copied
//! into the file without a sync may then be half there. The file holds nothing that cannot be
//! projected again, so it is treated as PostgreSQL treats an unlogged table after a crash: it
//! is emptied, and the projectors rebuild it from the log. Unlike an unlogged table, only a
//! stop of the machine costs a rebuild; a crash of the process does not.
//!
//! The mark (`readmodels.boot`) holds the boot id of the process writing unsynced. It is set,
//! synced, before the first unsynced write, and removed after a clean stop has synced the file
//! ([`super::ReadDb::close`]). A process that opens the file and finds the mark of another boot
//! removes the file first. Every opener decides under an exclusive lock of
//! `readmodels.boot.lock`, held only while it decides; every process writing unsynced holds a
//! shared lock of `readmodels.boot.users` for as long as it runs, and the last of them to stop
//! cleanly is the one that removes the mark.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

/// Where Linux keeps the id it draws at each boot.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// The mark's file, beside the read-model file.
pub const MARK_FILE: &str = "readmodels.boot";

/// The file every opener locks while it looks at the mark; never replaced, so that all of
/// them lock the same inode.
const LOCK_FILE: &str = "readmodels.boot.lock";

/// The file each process writing unsynced holds a shared lock of while it runs (the kernel
/// drops it when the process ends, however it ends).
const USERS_FILE: &str = "readmodels.boot.users";

/// The id of the running boot; `None` where the system does not say (not Linux): there the
/// file is written with syncs.
pub fn current() -> Option<String> {
    let id = fs::read_to_string(BOOT_ID).ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_owned())
}

/// What the opener found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// No mark, or this boot's: the file (if any) is as its writers left it.
    Whole,
    /// The mark of another boot: the file was written unsynced when the machine stopped, and
    /// has been removed.
    Discarded { boot: String },
}

/// This process's mark, held while it writes the file unsynced.
#[derive(Debug)]
pub(crate) struct Mark {
    dir: PathBuf,
    /// [`USERS_FILE`], locked shared.
    users: File,
}

/// Before a process opens the read-model file `file` in `dir` during boot `boot`: removes the
/// file (and its `-wal` and `-shm`) if the mark of another boot is there; then, for a process
/// that will write `unsynced`, sets this boot's mark, synced before it returns.
pub(crate) fn claim(
    dir: &Path,
    file: &str,
    boot: &str,
    unsynced: bool,
) -> io::Result<(Found, Option<Mark>)> {
    fs::create_dir_all(dir)?;
    let _deciding = Locked::take(dir)?;
    let found = match read_mark(dir)? {
        Some(marked) if marked != boot => {
            for suffix in ["", "-wal", "-shm"] {
                remove_if_there(&dir.join(format!("{file}{suffix}")))?;
            }
            remove_if_there(&dir.join(MARK_FILE))?;
            sync_dir(dir)?;
            Found::Discarded { boot: marked }
        }
        _ => Found::Whole,
    };
    let mark = if unsynced {
        let users = lock_file(dir, USERS_FILE, FlockOperation::LockShared)?;
        write_mark(dir, boot)?;
        Some(Mark {
            dir: dir.to_owned(),
            users,
        })
    } else {
        None
    };
    Ok((found, mark))
}

impl Mark {
    /// After this process has synced the file and will not write it again: removes the mark,
    /// so that a later boot trusts the file, unless another process still writes it unsynced
    /// (then the last of them does). Returns whether the mark was removed.
    pub(crate) fn release(self) -> io::Result<bool> {
        let _deciding = Locked::take(&self.dir)?;
        // The shared lock becomes exclusive only if no other process holds one.
        match rustix::fs::flock(&self.users, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(false),
            Err(error) => return Err(error.into()),
        }
        remove_if_there(&self.dir.join(MARK_FILE))?;
        sync_dir(&self.dir)?;
        Ok(true)
    }
}

/// The exclusive lock of [`LOCK_FILE`], released when dropped with the file's handle.
struct Locked {
    _file: File,
}

impl Locked {
    fn take(dir: &Path) -> io::Result<Self> {
        Ok(Self {
            _file: lock_file(dir, LOCK_FILE, FlockOperation::LockExclusive)?,
        })
    }
}

/// Opens (creating) `name` in `dir` and flocks it (waiting).
fn lock_file(dir: &Path, name: &str, how: FlockOperation) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(name))?;
    rustix::fs::flock(&file, how)?;
    Ok(file)
}

fn read_mark(dir: &Path) -> io::Result<Option<String>> {
    match fs::read_to_string(dir.join(MARK_FILE)) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Writes the mark whole or not at all (a temporary file renamed over it), synced with its
/// directory: it must be on disk before any unsynced write is.
fn write_mark(dir: &Path, boot: &str) -> io::Result<()> {
    let temporary = dir.join(format!("{MARK_FILE}.new"));
    let mut file = File::create(&temporary)?;
    writeln!(file, "{boot}")?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temporary, dir.join(MARK_FILE))?;
    sync_dir(dir)
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Makes the directory's entries (a created, renamed or removed file) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "readmodels.db";

    fn touch(dir: &Path, name: &str) {
        fs::write(dir.join(name), b"pages").expect("a file");
    }

    #[test]
    fn the_mark_of_another_boot_discards_the_file_and_its_journal() {
        let dir = tempfile::tempdir().expect("a directory");
        for name in [FILE, "readmodels.db-wal", "readmodels.db-shm", "lianxi.db"] {
            touch(dir.path(), name);
        }
        fs::write(dir.path().join(MARK_FILE), "earlier-boot\n").expect("a mark");

        let (found, mark) = claim(dir.path(), FILE, "this-boot", true).expect("claimed");

        assert_eq!(
            found,
            Found::Discarded {
                boot: "earlier-boot".into()
            }
        );
        for gone in [FILE, "readmodels.db-wal", "readmodels.db-shm"] {
            assert!(!dir.path().join(gone).exists(), "{gone} is still there");
        }
        // The log beside it is never touched.
        assert!(dir.path().join("lianxi.db").exists());
        assert!(mark.is_some());
        assert_eq!(
            read_mark(dir.path()).expect("readable"),
            Some("this-boot".into())
        );
    }

    #[test]
    fn the_mark_of_this_boot_keeps_the_file() {
        let dir = tempfile::tempdir().expect("a directory");
        touch(dir.path(), FILE);
        fs::write(dir.path().join(MARK_FILE), "this-boot\n").expect("a mark");

        let (found, _) = claim(dir.path(), FILE, "this-boot", true).expect("claimed");

        assert_eq!(found, Found::Whole);
        assert!(dir.path().join(FILE).exists());
    }

    /// A file left by a clean stop, or by a version that always synced, has no mark.
    #[test]
    fn no_mark_keeps_the_file_and_a_synced_opener_sets_none() {
        let dir = tempfile::tempdir().expect("a directory");
        touch(dir.path(), FILE);

        let (found, mark) = claim(dir.path(), FILE, "this-boot", false).expect("claimed");

        assert_eq!(found, Found::Whole);
        assert!(mark.is_none());
        assert!(dir.path().join(FILE).exists());
        assert_eq!(read_mark(dir.path()).expect("readable"), None);
    }

    /// A synced opener (a command-line tool) still refuses a file torn in an earlier boot.
    #[test]
    fn a_synced_opener_discards_a_torn_file_too() {
        let dir = tempfile::tempdir().expect("a directory");
        touch(dir.path(), FILE);
        fs::write(dir.path().join(MARK_FILE), "earlier-boot\n").expect("a mark");

        let (found, mark) = claim(dir.path(), FILE, "this-boot", false).expect("claimed");

        assert!(matches!(found, Found::Discarded { .. }));
        assert!(mark.is_none());
        assert!(!dir.path().join(FILE).exists());
        assert_eq!(read_mark(dir.path()).expect("readable"), None);
    }

    #[test]
    fn a_released_mark_lets_a_later_boot_keep_the_file() {
        let dir = tempfile::tempdir().expect("a directory");
        let (_, mark) = claim(dir.path(), FILE, "first-boot", true).expect("claimed");
        touch(dir.path(), FILE);
        assert!(mark.expect("a mark").release().expect("released"));

        let (found, _) = claim(dir.path(), FILE, "second-boot", true).expect("claimed");

        assert_eq!(found, Found::Whole);
        assert!(dir.path().join(FILE).exists());
    }

    /// Two processes writing one file unsynced (flock treats two opens as two holders): the
    /// first to stop leaves the mark to the other, which still writes unsynced.
    #[test]
    fn the_last_unsynced_writer_to_stop_removes_the_mark() {
        let dir = tempfile::tempdir().expect("a directory");
        let (_, first) = claim(dir.path(), FILE, "this-boot", true).expect("claimed");
        let (_, second) = claim(dir.path(), FILE, "this-boot", true).expect("claimed");

        assert!(!first.expect("a mark").release().expect("released"));
        assert_eq!(
            read_mark(dir.path()).expect("readable"),
            Some("this-boot".into())
        );

        assert!(second.expect("a mark").release().expect("released"));
        assert_eq!(read_mark(dir.path()).expect("readable"), None);
    }

    /// A writer that died (its locks went with it) does not keep the mark from the last one.
    #[test]
    fn a_writer_gone_without_a_clean_stop_does_not_hold_the_mark() {
        let dir = tempfile::tempdir().expect("a directory");
        let (_, crashed) = claim(dir.path(), FILE, "this-boot", true).expect("claimed");
        drop(crashed); // as the kernel does for a killed process: its handles close
        let (_, running) = claim(dir.path(), FILE, "this-boot", true).expect("claimed");

        assert!(running.expect("a mark").release().expect("released"));
        assert_eq!(read_mark(dir.path()).expect("readable"), None);
    }

    #[test]
    fn this_machine_says_which_boot_it_is() {
        // The tests run on Linux, where an unsynced server needs it.
        let boot = current().expect("a boot id");
        assert_eq!(current().as_deref(), Some(boot.as_str()));
        assert!(boot.len() >= 32, "{boot}");
    }
}
