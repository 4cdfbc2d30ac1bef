//! Shows copy progress on the terminal: a byte bar per image (and one for all images once
//! several run), plain log lines when stderr is not a terminal, or nothing with `--quiet`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use omx_core::report::{human_bytes, human_rate};
use omx_core::Digest;
use omx_registry::{ImageId, ProgressEvent, ProgressSink};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Redrawn bars with bytes, rate and ETA (stderr is a terminal).
    Bars,
    /// One line per image event, for logs and CI.
    Lines,
    /// Nothing; errors still reach the caller.
    Quiet,
}

impl Mode {
    /// Bars on a terminal, lines otherwise, nothing when `quiet`.
    pub fn detect(quiet: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        }
    }
}

/// A [`ProgressSink`] for the terminal; handles any number of images at once.
pub struct TerminalProgress {
    mode: Mode,
    /// Print a line when an image's copy ends; off where the caller reports each image's end
    /// itself with more to say (skips, pull-through priming, verification).
    end_lines: bool,
    multi: MultiProgress,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    images: HashMap<ImageId, ImageState>,
    overall: Option<ProgressBar>,
}

struct ImageState {
    label: String,
    bar: Option<ProgressBar>,
    tally: Tally,
    started: Instant,
}

/// Byte and blob accounting for one image.
///
/// Events carry each blob's absolute byte count, so a blob that restarts after a broken
/// connection simply reports lower numbers: the position never double-counts. Skipped and
/// mounted blobs leave the total rather than adding to the position, so rate and ETA describe
/// the bytes that actually travel.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    planned: u64,
    not_transferred: u64,
    finished: u64,
    in_flight: HashMap<Digest, u64>,
    pub copied: usize,
    pub skipped: usize,
    pub mounted: usize,
}

impl Tally {
    /// Bytes that have to travel.
    pub fn total(&self) -> u64 {
        self.planned.saturating_sub(self.not_transferred)
    }

    /// Bytes that have travelled (verified) so far.
    pub fn position(&self) -> u64 {
        self.finished + self.in_flight.values().sum::<u64>()
    }

    pub fn planned(&mut self, bytes: u64) {
        self.planned += bytes;
    }

    pub fn progress(&mut self, digest: &Digest, transferred: u64) {
        self.in_flight.insert(digest.clone(), transferred);
    }

    pub fn restarted(&mut self, digest: &Digest) {
        self.in_flight.remove(digest);
    }

    pub fn finished(&mut self, digest: &Digest, size: u64) {
        self.in_flight.remove(digest);
        self.finished += size;
        self.copied += 1;
    }

    pub fn skipped(&mut self, size: u64) {
        self.not_transferred += size;
        self.skipped += 1;
    }

    pub fn mounted(&mut self, size: u64) {
        self.not_transferred += size;
        self.mounted += 1;
    }

    /// `3 blobs copied (12.0 MiB at 112 MiB/s), 2 already present, 1 mounted`, for a copy that
    /// took `elapsed`.
    pub fn summary(&self, elapsed: Duration) -> String {
        let mut copied = human_bytes(self.finished);
        if self.finished > 0 && !elapsed.is_zero() {
            let rate = self.finished as f64 / elapsed.as_secs_f64();
            let _ = write!(copied, " at {}", human_rate(rate));
        }
        format!(
            "{} blob{} copied ({copied}), {} already present, {} mounted",
            self.copied,
            if self.copied == 1 { "" } else { "s" },
            self.skipped,
            self.mounted
        )
    }
}

/// Numbers first, the (long) image names last, so they may be cut at the terminal's edge.
/// Sizes and the rate are ours (`68.0 MiB`, `112 MiB/s`) rather than indicatif's, so bars, lines
/// and messages write numbers the same way.
const BAR_TEMPLATE: &str = "[{bar:25}] {done:>9}/{size:<9} {rate:>10} eta {eta:>3} {wide_msg}";

impl TerminalProgress {
    pub fn new(mode: Mode) -> TerminalProgress {
        let target = match mode {
            Mode::Bars => ProgressDrawTarget::stderr(),
            Mode::Lines | Mode::Quiet => ProgressDrawTarget::hidden(),
        };
        TerminalProgress {
            mode,
            end_lines: true,
            multi: MultiProgress::with_draw_target(target),
            state: Mutex::new(State::default()),
        }
    }

    /// Leaves each image's closing line to the caller.
    pub fn without_end_lines(mut self) -> TerminalProgress {
        self.end_lines = false;
        self
    }

    /// Prints a message to stderr without tearing the bars (suppressed when quiet).
    pub fn println(&self, message: &str) {
        match self.mode {
            Mode::Bars => {
                let _ = self.multi.println(message);
            }
            Mode::Lines => eprintln!("{message}"),
            Mode::Quiet => {}
        }
    }

    /// Removes the bars that are still drawn (the overall one), leaving the printed lines.
    pub fn finish(&self) {
        if let Some(overall) = self.state().overall.take() {
            overall.finish_and_clear();
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn bar(&self, style: &str) -> ProgressBar {
        let style = ProgressStyle::with_template(style)
            .expect("the progress template is valid")
            .with_key(
                "done",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&human_bytes(state.pos()));
                },
            )
            .with_key(
                "size",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&human_bytes(state.len().unwrap_or(0)));
                },
            )
            .with_key(
                "rate",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&human_rate(state.per_sec()));
                },
            )
            .progress_chars("=> ");
        ProgressBar::new(0).with_style(style)
    }

    /// Redraws one image's bar and the overall bar from the tallies.
    fn redraw(&self, state: &State, image: ImageId) {
        if let Some(entry) = state.images.get(&image) {
            if let Some(bar) = &entry.bar {
                bar.set_length(entry.tally.total());
                bar.set_position(entry.tally.position());
            }
        }
        if let Some(overall) = &state.overall {
            let (total, position) = state.images.values().fold((0, 0), |(t, p), image| {
                (t + image.tally.total(), p + image.tally.position())
            });
            overall.set_length(total);
            overall.set_position(position);
        }
    }

    fn started(&self, image: ImageId, label: String) {
        let mut state = self.state();
        let bar = (self.mode == Mode::Bars).then(|| {
            let bar = self.bar(BAR_TEMPLATE).with_message(label.clone());
            match &state.overall {
                Some(overall) => self.multi.insert_before(overall, bar),
                None => self.multi.add(bar),
            }
        });
        if self.mode == Mode::Lines {
            eprintln!("copying {label}");
        }
        state.images.insert(
            image,
            ImageState {
                label,
                bar,
                tally: Tally::default(),
                started: Instant::now(),
            },
        );
        if self.mode == Mode::Bars && state.overall.is_none() && state.images.len() > 1 {
            let overall = self.multi.add(self.bar(BAR_TEMPLATE));
            overall.set_message("all images");
            state.overall = Some(overall);
        }
        self.redraw(&state, image);
    }

    fn ended(&self, image: ImageId, line: String) {
        let mut state = self.state();
        if let Some(entry) = state.images.get_mut(&image) {
            if let Some(bar) = entry.bar.take() {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
        }
        if self.end_lines {
            self.println(&line);
        }
        self.redraw(&state, image);
    }
}

impl ProgressSink for TerminalProgress {
    fn event(&self, event: ProgressEvent<'_>) {
        if self.mode == Mode::Quiet {
            return;
        }
        match event {
            ProgressEvent::ImageStarted {
                image,
                source,
                target,
            } => self.started(image, format!("{source} -> {target}")),
            ProgressEvent::ImageDone {
                image,
                digest,
                up_to_date,
            } => {
                let line = {
                    let state = self.state();
                    state.images.get(&image).map(|entry| {
                        if up_to_date {
                            format!("up to date {} {digest}", entry.label)
                        } else {
                            let summary = entry.tally.summary(entry.started.elapsed());
                            format!("copied {} ({summary}) {digest}", entry.label)
                        }
                    })
                };
                self.ended(image, line.unwrap_or_else(|| format!("copied {digest}")));
            }
            ProgressEvent::ImageFailed { image, error } => {
                let label = self
                    .state()
                    .images
                    .get(&image)
                    .map(|entry| entry.label.clone())
                    .unwrap_or_default();
                self.ended(image, format!("failed {label}: {error}"));
            }
            ProgressEvent::BlobRetrying {
                image,
                digest,
                attempt,
                reason,
            } => {
                let mut state = self.state();
                let label = match state.images.get_mut(&image) {
                    Some(entry) => {
                        entry.tally.restarted(digest);
                        entry.label.clone()
                    }
                    None => String::new(),
                };
                self.redraw(&state, image);
                drop(state);
                self.println(&format!(
                    "retrying blob {} of {label} (attempt {attempt} failed): {reason}",
                    digest.short()
                ));
            }
            other => {
                let mut state = self.state();
                let image = match other {
                    ProgressEvent::BlobsPlanned { image, .. }
                    | ProgressEvent::BlobStarted { image, .. }
                    | ProgressEvent::BlobProgress { image, .. }
                    | ProgressEvent::BlobFinished { image, .. }
                    | ProgressEvent::BlobSkipped { image, .. }
                    | ProgressEvent::BlobMounted { image, .. } => image,
                    _ => return,
                };
                let Some(entry) = state.images.get_mut(&image) else {
                    return;
                };
                match other {
                    ProgressEvent::BlobsPlanned { bytes, .. } => entry.tally.planned(bytes),
                    ProgressEvent::BlobProgress {
                        digest,
                        transferred,
                        ..
                    } => entry.tally.progress(digest, transferred),
                    ProgressEvent::BlobStarted { digest, .. } => entry.tally.restarted(digest),
                    ProgressEvent::BlobFinished { digest, size, .. } => {
                        entry.tally.finished(digest, size)
                    }
                    ProgressEvent::BlobSkipped { size, .. } => entry.tally.skipped(size),
                    ProgressEvent::BlobMounted { size, .. } => entry.tally.mounted(size),
                    _ => {}
                }
                self.redraw(&state, image);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    #[test]
    fn tally_counts_restarts_once_and_excludes_skipped_bytes() {
        let mut tally = Tally::default();
        tally.planned(1_000);
        tally.progress(&digest(1), 300);
        tally.progress(&digest(2), 100);
        assert_eq!((tally.position(), tally.total()), (400, 1_000));
        tally.restarted(&digest(1));
        tally.progress(&digest(1), 50);
        assert_eq!(tally.position(), 150);
        tally.finished(&digest(1), 600);
        tally.skipped(200);
        tally.mounted(100);
        assert_eq!(tally.total(), 700);
        assert_eq!(tally.position(), 700);
        assert_eq!(
            tally.summary(Duration::from_millis(500)),
            "1 blob copied (600 B at 1.2 KiB/s), 1 already present, 1 mounted"
        );
        tally.finished(&digest(2), 71_303_168 - 600);
        assert_eq!(
            tally.summary(Duration::from_secs(1)),
            "2 blobs copied (68.0 MiB at 68 MiB/s), 1 already present, 1 mounted"
        );
    }

    #[test]
    fn sink_accepts_events_for_many_images_in_every_mode() {
        let source = omx_core::Reference::parse("quay.io/a/b:1").unwrap();
        let target = omx_core::Reference::parse("127.0.0.1:5000/quay/a/b:1").unwrap();
        for mode in [Mode::Bars, Mode::Lines, Mode::Quiet] {
            let sink = TerminalProgress::new(mode);
            for n in 0..3 {
                let image = ImageId(n);
                sink.event(ProgressEvent::ImageStarted {
                    image,
                    source: &source,
                    target: &target,
                });
                sink.event(ProgressEvent::BlobsPlanned {
                    image,
                    blobs: 1,
                    bytes: 10,
                });
                sink.event(ProgressEvent::BlobProgress {
                    image,
                    digest: &digest(1),
                    transferred: 5,
                    size: 10,
                });
                sink.event(ProgressEvent::BlobFinished {
                    image,
                    digest: &digest(1),
                    size: 10,
                });
            }
            if mode != Mode::Quiet {
                let state = sink.state();
                assert_eq!(state.images.len(), 3);
                assert!(state.images.values().all(|i| i.tally.position() == 10));
                assert_eq!(state.overall.is_some(), mode == Mode::Bars);
            }
            sink.event(ProgressEvent::ImageDone {
                image: ImageId(0),
                digest: &digest(9),
                up_to_date: false,
            });
            sink.finish();
        }
    }
}
