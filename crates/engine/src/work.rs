//! The work folder's files over the run of a plan. On Cloud Run the folder lives in
//! memory and counts against the job's budget, so it holds only what is still to be
//! read: a staged input is removed after a step reads it unless the next step reads it
//! too, and fetched again (through [`Staging`]) before a later step that needs it; a
//! temporary is removed after its last reader; the segments a concat list joins are
//! unlinked while the joining FFmpeg reads them (see [`UnlinkWhenOpened`]).

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use br_plan::{Arg, Plan, Step, TempFormat};

use crate::budget::ledger::Ledger;
use crate::storage::StorageError;

/// Real files behind the plan's numbers. Only the host writes this table.
pub struct PathTable {
    /// Staged inputs: index 0 the song, 1 + i clip i.
    pub inputs: Vec<PathBuf>,
    /// The job's work folder: temporaries live here.
    pub work: PathBuf,
    pub output: PathBuf,
}

impl PathTable {
    pub fn temp(&self, index: u32, format: TempFormat) -> PathBuf {
        self.work.join(format!("temp-{index:05}.{}", format.extension()))
    }
}

/// Puts staged input `input` (0 the song, 1 + i clip i) back at `path`, taking at most
/// `room` bytes of the work folder (it is refused, not copied, when it needs more).
pub trait Staging: Sync {
    fn stage<'a>(
        &'a self,
        input: u32,
        path: &'a Path,
        room: u64,
    ) -> Pin<Box<dyn Future<Output = Result<u64, StorageError>> + Send + 'a>>;
    /// The room staging `input` again takes in the work folder (with anything that
    /// runs to stage it), so that a step that needs it waits for that room too.
    fn room_for(&self, input: u32) -> u64;
}

/// Outputs of steps kept across jobs ([`crate::audio_cache`]): a step the cache covers
/// and holds is not run, its output is put in place instead; one it covers and does not
/// hold is kept once it has run. Failures are the cache's to log, never the job's.
pub trait StepCache: Sync {
    fn covers(&self, step: usize) -> bool;
    /// Puts step `step`'s output at `output`, at most `room` bytes; true when it did (and
    /// `output` is then whole), false with no file left at `output` otherwise.
    fn restore<'a>(&'a self, step: usize, output: &'a Path, room: u64) -> futures::future::BoxFuture<'a, bool>;
    /// Keeps what step `step` wrote at `output` for later jobs.
    fn keep<'a>(&'a self, step: usize, output: &'a Path) -> futures::future::BoxFuture<'a, ()>;
}

/// No step is cached.
pub struct NoCache;

impl StepCache for NoCache {
    fn covers(&self, _: usize) -> bool {
        false
    }

    fn restore<'a>(&'a self, _: usize, _: &'a Path, _: u64) -> futures::future::BoxFuture<'a, bool> {
        Box::pin(async { false })
    }

    fn keep<'a>(&'a self, _: usize, _: &'a Path) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// What each step reads, and which of its readers have started and finished. Two steps
/// may run at once, and a later one in the plan may finish first: a temp goes only when
/// every step that reads it has finished, whatever their order.
pub struct Uses {
    /// Per step: the staged inputs it reads.
    inputs: Vec<BTreeSet<u32>>,
    /// Per step: every temp it reads, itself or as a part of a concat list it reads (or
    /// writes: its writer has finished before any reader starts).
    reads: Vec<BTreeSet<u32>>,
    /// Per step: the concat parts it reads through a list, in list order.
    parts: Vec<Vec<u32>>,
    /// Per temp: how many of its readers have not started yet.
    to_start: HashMap<u32, usize>,
    /// Per temp: how many of its readers have not finished yet.
    to_finish: HashMap<u32, usize>,
    /// Per step: counted as started, as finished (each is counted once).
    counted: Vec<(bool, bool)>,
}

impl Uses {
    pub fn of(plan: &Plan) -> Uses {
        let mut list_parts: HashMap<u32, Vec<u32>> = HashMap::new();
        for step in &plan.steps {
            if let Step::WriteConcatList(list) = step {
                list_parts.entry(list.list).or_default().extend(list.parts.iter().map(|p| p.temp));
            }
        }
        let (to_start, to_finish) = (HashMap::new(), HashMap::new());
        let counted = vec![(false, false); plan.steps.len()];
        let (inputs, reads, parts) = (Vec::new(), Vec::new(), Vec::new());
        let mut uses = Uses { inputs, reads, parts, to_start, to_finish, counted };
        for step in &plan.steps {
            let (mut inputs, mut reads, mut parts) = (BTreeSet::new(), BTreeSet::new(), Vec::new());
            if let Step::Ffmpeg(invocation) = step {
                for arg in &invocation.args {
                    match arg {
                        Arg::Input(n) => {
                            inputs.insert(*n);
                        }
                        Arg::Temp(t) => {
                            reads.insert(*t);
                            for part in list_parts.get(t).into_iter().flatten() {
                                reads.insert(*part);
                                parts.push(*part);
                            }
                        }
                        Arg::Output | Arg::Literal(_) => {}
                    }
                }
            }
            for temp in &reads {
                *uses.to_start.entry(*temp).or_default() += 1;
                *uses.to_finish.entry(*temp).or_default() += 1;
            }
            uses.inputs.push(inputs);
            uses.reads.push(reads);
            uses.parts.push(parts);
        }
        uses
    }

    pub fn inputs_of(&self, step: usize) -> impl Iterator<Item = u32> + '_ {
        self.inputs.get(step).into_iter().flatten().copied()
    }

    /// Step `step` starts (called once, before its FFmpeg does): the concat parts it may
    /// unlink once its FFmpeg has them open, in the order it reads them. Those are the
    /// parts it is the last reader of to start while no other reader is still running:
    /// a reader that started earlier may not have opened a part yet, and keeps it.
    pub fn started(&mut self, step: usize, paths: &PathTable) -> Vec<PathBuf> {
        let first = self.counted.get_mut(step).is_some_and(|(started, _)| !std::mem::replace(started, true));
        for temp in self.reads.get(step).into_iter().flatten().filter(|_| first) {
            if let Some(count) = self.to_start.get_mut(temp) {
                *count = count.saturating_sub(1);
            }
        }
        self.parts
            .get(step)
            .into_iter()
            .flatten()
            .filter(|part| self.to_start.get(part) == Some(&0) && self.to_finish.get(part) == Some(&1))
            .map(|part| paths.temp(*part, TempFormat::Nut))
            .collect()
    }

    /// Step `step` finished: removes what it read and no other step needs soon: inputs
    /// that neither the next FFmpeg step nor a step still running (`busy`) reads (a later
    /// one fetches them again), temps whose every reader has now finished. Their charges
    /// go from `ledger` with them: their readers have ended, so nothing holds them open any
    /// more (a concat part unlinked while the join read it was charged until now).
    pub fn release_after(
        &mut self,
        step: usize,
        paths: &PathTable,
        formats: &[TempFormat],
        busy: &BTreeSet<u32>,
        ledger: &Ledger,
    ) {
        let next = (step + 1..self.inputs.len()).find(|&s| !self.inputs[s].is_empty());
        let mut kept: BTreeSet<u32> = next.map(|s| self.inputs[s].clone()).unwrap_or_default();
        kept.extend(busy);
        let inputs = self.inputs_of(step).filter(|n| !kept.contains(n));
        let inputs: Vec<PathBuf> = inputs.filter_map(|n| paths.inputs.get(n as usize).cloned()).collect();
        let mut done = Vec::new();
        let first = self.counted.get_mut(step).is_some_and(|(_, finished)| !std::mem::replace(finished, true));
        for temp in self.reads.get(step).into_iter().flatten().filter(|_| first) {
            if let Some(count) = self.to_finish.get_mut(temp) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    done.push(*temp);
                }
            }
        }
        let temps = done.into_iter().filter_map(|t| formats.get(t as usize).map(|format| paths.temp(t, *format)));
        for file in inputs.into_iter().chain(temps) {
            ledger.remove(&file);
        }
    }
}

/// While an FFmpeg child joins segments through a concat list, unlinks each segment
/// (and every one before it in the list) as soon as the child has it open: FFmpeg's
/// concat demuxer reads them in order, one at a time, and the open descriptor keeps
/// the data readable until FFmpeg closes it, after which its memory is freed. So the
/// join holds one segment at a time besides its output, not all of them.
pub struct UnlinkWhenOpened {
    pid: u32,
    /// In the order the child reads them.
    parts: Vec<PathBuf>,
    /// How many of `parts` are unlinked already.
    done: usize,
}

impl UnlinkWhenOpened {
    pub fn new(pid: u32, parts: Vec<PathBuf>) -> UnlinkWhenOpened {
        UnlinkWhenOpened { pid, parts, done: 0 }
    }

    pub fn is_finished(&self) -> bool {
        self.done >= self.parts.len()
    }

    /// One look at the child's open files.
    pub fn poll(&mut self) {
        let Ok(entries) = std::fs::read_dir(format!("/proc/{}/fd", self.pid)) else {
            return;
        };
        let open: Vec<PathBuf> = entries.flatten().filter_map(|entry| std::fs::read_link(entry.path()).ok()).collect();
        let Some(reading) = self.parts.iter().rposition(|part| open.contains(part)) else {
            return;
        };
        for part in self.parts.get(self.done..=reading).into_iter().flatten() {
            crate::files::remove_if_present(part);
        }
        self.done = self.done.max(reading + 1);
    }
}

/// The job's work folder, removed when dropped, on every path. A copy still running on
/// the blocking pool when a job fails (a sibling download) may write one more chunk
/// while the folder is removed; so the removal is retried briefly (the copy sees that it
/// was abandoned and deletes its file within one chunk) rather than leaving a folder.
pub struct WorkFolder {
    dir: Option<tempfile::TempDir>,
}

/// How long the removal keeps trying.
const REMOVAL_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

impl WorkFolder {
    pub fn new(dir: tempfile::TempDir) -> WorkFolder {
        WorkFolder { dir: Some(dir) }
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new(""), tempfile::TempDir::path)
    }
}

impl Drop for WorkFolder {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        let path = dir.keep();
        let started = std::time::Instant::now();
        loop {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => return,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return,
                Err(error) if started.elapsed() >= REMOVAL_PATIENCE => {
                    tracing::error!(folder = %path.display(), "cannot remove the work folder: {error}");
                    return;
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use br_plan::{ConcatList, ConcatPart, Invocation};

    fn ffmpeg(args: Vec<Arg>) -> Step {
        Step::Ffmpeg(Invocation { args, media_seconds: 1.0, label: "x".into() })
    }

    /// Clip 1 then clips 1 and 2 into segments, joined with the song.
    fn plan() -> Plan {
        let lit = |s: &str| Arg::lit(s);
        Plan {
            temps: vec![TempFormat::Nut, TempFormat::Nut, TempFormat::Ffconcat],
            steps: vec![
                ffmpeg(vec![lit("-i"), Arg::Input(1), lit("-f"), lit("nut"), Arg::Temp(0)]),
                ffmpeg(vec![lit("-i"), Arg::Input(1), lit("-i"), Arg::Input(2), lit("-f"), lit("nut"), Arg::Temp(1)]),
                Step::WriteConcatList(ConcatList {
                    list: 2,
                    parts: vec![ConcatPart { temp: 0, duration: 1.0 }, ConcatPart { temp: 1, duration: 1.0 }],
                }),
                ffmpeg(vec![
                    lit("-f"),
                    lit("concat"),
                    lit("-i"),
                    Arg::Temp(2),
                    lit("-i"),
                    Arg::Input(0),
                    lit("-f"),
                    lit("mp4"),
                    Arg::Output,
                ]),
            ],
            warnings: vec![],
        }
    }

    fn table(folder: &Path) -> PathTable {
        PathTable {
            inputs: (0..3).map(|n| folder.join(format!("input-{n}"))).collect(),
            work: folder.to_owned(),
            output: folder.join("out.mp4"),
        }
    }

    #[test]
    fn files_go_when_no_coming_step_reads_them() {
        let folder = tempfile::tempdir().unwrap();
        let paths = table(folder.path());
        let plan = plan();
        for file in paths.inputs.iter().chain([
            &paths.temp(0, TempFormat::Nut),
            &paths.temp(1, TempFormat::Nut),
            &paths.temp(2, TempFormat::Ffconcat),
        ]) {
            std::fs::write(file, b"x").unwrap();
        }
        let mut uses = Uses::of(&plan);
        let ledger = Ledger::new(1 << 30);
        for file in &paths.inputs {
            ledger.charge(file, 1);
        }
        assert_eq!(uses.inputs_of(1).collect::<Vec<_>>(), [1, 2]);
        let none = BTreeSet::new();
        uses.started(0, &paths);
        uses.release_after(0, &paths, &plan.temps, &none, &ledger);
        assert!(paths.inputs[1].exists(), "the next step reads clip 1 too");
        uses.started(1, &paths);
        uses.release_after(1, &paths, &plan.temps, &BTreeSet::from([2]), &ledger);
        assert!(!paths.inputs[1].exists() && paths.inputs[2].exists(), "a running step still reads clip 2");
        uses.release_after(1, &paths, &plan.temps, &none, &ledger);
        assert!(!paths.inputs[1].exists() && !paths.inputs[2].exists());
        assert!(paths.temp(0, TempFormat::Nut).exists(), "the join still reads the segments");
        assert_eq!(uses.started(3, &paths), [paths.temp(0, TempFormat::Nut), paths.temp(1, TempFormat::Nut)]);
        uses.release_after(3, &paths, &plan.temps, &none, &ledger);
        let left: Vec<_> = std::fs::read_dir(folder.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(left.is_empty(), "{left:?}");
        assert_eq!(ledger.files(), 0, "their charges went with them");
    }

    /// Two steps that read one temp, running at once: whichever finishes first, the
    /// temp stays until the other has finished too.
    #[test]
    fn a_temp_read_by_two_running_steps_goes_when_both_have_finished_in_either_order() {
        let lit = |s: &str| Arg::lit(s);
        let plan = Plan {
            temps: vec![TempFormat::Nut, TempFormat::Nut, TempFormat::Nut],
            steps: vec![
                ffmpeg(vec![lit("-i"), Arg::Input(1), lit("-f"), lit("nut"), Arg::Temp(0)]),
                ffmpeg(vec![lit("-i"), Arg::Temp(0), lit("-f"), lit("nut"), Arg::Temp(1)]),
                ffmpeg(vec![lit("-i"), Arg::Temp(0), lit("-f"), lit("nut"), Arg::Temp(2)]),
            ],
            warnings: vec![],
        };
        let none = BTreeSet::new();
        for (first, second) in [(1, 2), (2, 1)] {
            let folder = tempfile::tempdir().unwrap();
            let paths = table(folder.path());
            let shared = paths.temp(0, TempFormat::Nut);
            std::fs::write(&shared, b"x").unwrap();
            let mut uses = Uses::of(&plan);
            uses.started(0, &paths);
            uses.release_after(0, &paths, &plan.temps, &none, &Ledger::new(1 << 30));
            assert!(uses.started(1, &paths).is_empty() && uses.started(2, &paths).is_empty());
            uses.release_after(first, &paths, &plan.temps, &none, &Ledger::new(1 << 30));
            assert!(shared.exists(), "step {first} finished first and removed what step {second} still reads");
            uses.release_after(second, &paths, &plan.temps, &none, &Ledger::new(1 << 30));
            assert!(!shared.exists(), "both readers finished, first {first}");
        }
    }

    /// Two joins of one concat list: a part is unlinked as it is opened only by the
    /// last reader to start, and only when the other is not still running (it may not
    /// have opened it yet); otherwise it goes when both have finished.
    #[test]
    fn concat_parts_read_by_two_steps_are_unlinked_only_by_the_last_reader() {
        let lit = |s: &str| Arg::lit(s);
        let join = |out: u32| {
            ffmpeg(vec![lit("-f"), lit("concat"), lit("-i"), Arg::Temp(1), lit("-f"), lit("nut"), Arg::Temp(out)])
        };
        let plan = Plan {
            temps: vec![TempFormat::Nut, TempFormat::Ffconcat, TempFormat::Nut, TempFormat::Nut],
            steps: vec![
                ffmpeg(vec![lit("-i"), Arg::Input(1), lit("-f"), lit("nut"), Arg::Temp(0)]),
                Step::WriteConcatList(ConcatList { list: 1, parts: vec![ConcatPart { temp: 0, duration: 1.0 }] }),
                join(2),
                join(3),
            ],
            warnings: vec![],
        };
        let none = BTreeSet::new();
        let folder = tempfile::tempdir().unwrap();
        let paths = table(folder.path());
        let (part, list) = (paths.temp(0, TempFormat::Nut), paths.temp(1, TempFormat::Ffconcat));
        let write = || [&part, &list].iter().for_each(|file| std::fs::write(file, b"x").unwrap());

        // Both running at once, the later-indexed one finishing first.
        write();
        let mut uses = Uses::of(&plan);
        uses.started(0, &paths);
        uses.release_after(0, &paths, &plan.temps, &none, &Ledger::new(1 << 30));
        assert!(uses.started(2, &paths).is_empty(), "step 3 has not started: it will read the part");
        assert!(uses.started(3, &paths).is_empty(), "step 2 still runs and may not have the part open yet");
        uses.release_after(3, &paths, &plan.temps, &none, &Ledger::new(1 << 30));
        assert!(part.exists() && list.exists(), "step 2 still reads them");
        uses.release_after(2, &paths, &plan.temps, &none, &Ledger::new(1 << 30));
        assert!(!part.exists() && !list.exists());

        // One after the other: the second reader unlinks the part as it opens it.
        write();
        let mut uses = Uses::of(&plan);
        uses.started(0, &paths);
        uses.release_after(0, &paths, &plan.temps, &none, &Ledger::new(1 << 30));
        assert!(uses.started(2, &paths).is_empty());
        uses.release_after(2, &paths, &plan.temps, &none, &Ledger::new(1 << 30));
        assert!(part.exists() && list.exists(), "step 3 reads them next");
        assert_eq!(uses.started(3, &paths), std::slice::from_ref(&part));
        uses.release_after(3, &paths, &plan.temps, &none, &Ledger::new(1 << 30));
        assert!(!part.exists() && !list.exists());
    }

    #[test]
    fn segments_are_unlinked_once_the_reader_has_opened_them() {
        let folder = tempfile::tempdir().unwrap();
        let parts: Vec<PathBuf> = (0..3).map(|n| folder.path().join(format!("part-{n}"))).collect();
        for part in &parts {
            std::fs::write(part, b"segment").unwrap();
        }
        // A reader that holds part 1 open.
        let mut reader = std::process::Command::new("sh")
            .arg("-c")
            .arg("exec 3< \"$0\"; echo open; sleep 30")
            .arg(&parts[1])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(reader.stdout.as_mut().unwrap()), &mut line).unwrap();
        let mut unlinker = UnlinkWhenOpened::new(reader.id(), parts.clone());
        unlinker.poll();
        reader.kill().unwrap();
        reader.wait().unwrap();
        assert!(!parts[0].exists() && !parts[1].exists(), "parts up to the open one are unlinked");
        assert!(parts[2].exists() && !unlinker.is_finished());
    }
}
