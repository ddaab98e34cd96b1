//! The command line: every subcommand, flag and environment variable clap reads, and
//! the checks of their shapes. `main` parses; [`crate::commands`] dispatches, a module
//! per subcommand; a job command's flags become its [`crate::settings::Settings`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use br_engine::logging;

mod flags;
pub use flags::*;

#[derive(Parser)]
#[command(
    name = "blueprint-runner",
    version,
    about = "Turns a video blueprint into a video, deciding inside a WebAssembly sandbox"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format. `job` logs to stdout (Cloud Logging reads it), the other commands
    /// to stderr.
    #[arg(long, global = true, value_enum, default_value = "json")]
    pub log_format: LogFormat,
}

/// `--log-format`: one Cloud Logging entry per line, or text for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

impl From<LogFormat> for logging::LogFormat {
    fn from(format: LogFormat) -> logging::LogFormat {
        match format {
            LogFormat::Json => logging::LogFormat::Json,
            LogFormat::Text => logging::LogFormat::Text,
        }
    }
}

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Load a plugin as a job would and try it on built-in blueprints over made-up media
    /// facts (and on yours, --blueprint): its contract and imports, fuel and memory per
    /// call against the limits, the policy's verdict on each plan, and whether each plan's
    /// output matches the timeline. A blueprint the plugin refuses with errors that point
    /// into it is its own rule, reported, not a problem. Exit 0 when nothing is wrong, 3
    /// with the problems listed.
    Check {
        /// The plugin component (.wasm).
        plugin: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Also try the plugin on this blueprint file; `FILE:FRAMES` also expects the
        /// video it describes to have FRAMES frames. Repeatable.
        #[arg(long = "blueprint", value_name = "FILE[:FRAMES]", value_parser = GivenBlueprint::parse)]
        blueprints: Vec<GivenBlueprint>,
        /// Media facts for the --blueprint files instead of made-up ones (JSON: the
        /// `inputs` list `plan` prints), each input found by its key.
        #[arg(long, requires = "blueprints")]
        facts: Option<PathBuf>,
        /// Try only the --blueprint files, not the built-in blueprints.
        #[arg(long, requires = "blueprints")]
        skip_built_in: bool,
        #[command(flatten)]
        sandbox: SandboxFlags,
    },
    /// Call one of a plugin's exports once and print its whole answer as JSON, with the
    /// fuel and memory the call used.
    Call {
        #[command(subcommand)]
        call: PluginCall,
    },
    /// Write a plugin crate into DIR that builds on the guest SDK and, unchanged, decides
    /// exactly as the built-in guest does (`cargo build --release --target wasm32-wasip2`).
    New {
        /// The folder to create (it must not exist or be empty).
        dir: PathBuf,
        /// The crate's name (default: the folder's name).
        #[arg(long)]
        name: Option<String>,
        /// The SDK crate's folder (`crates/guest-sdk` of a checkout); default: the source
        /// tree this binary was built from.
        #[arg(long, value_name = "PATH")]
        sdk: Option<PathBuf>,
        /// Take the SDK from this git repository instead.
        #[arg(long, value_name = "URL")]
        sdk_git: Option<String>,
        /// The git revision of --sdk-git.
        #[arg(long, value_name = "REV", requires = "sdk_git")]
        sdk_rev: Option<String>,
    },
}

/// The plugin is the PLUGIN argument, else `--guest` (GUEST_COMPONENT), else the
/// built-in guest.
#[derive(Subcommand)]
pub enum PluginCall {
    /// Run the plugin's `validate` on a blueprint: prints the validated timeline (its fit
    /// and warnings) or the refusal. Exit 0 valid, 2 refused, 3 sandbox error.
    Validate {
        /// Blueprint file, or '-' for stdin.
        blueprint: String,
        /// The plugin component (.wasm).
        plugin: Option<PathBuf>,
        #[command(flatten)]
        timeline: TimelineFlags,
        #[command(flatten)]
        sandbox: SandboxFlags,
    },
    /// Run the plugin's `plan` on a plan request file (`run --save-plan-request` writes
    /// one): prints the plan or the plan errors, and the policy's verdict on the plan.
    /// Exit 0 the plan passes, 4 no plan, 3 policy refusal or sandbox error.
    Plan {
        /// The plan request file.
        request: PathBuf,
        /// The plugin component (.wasm).
        plugin: Option<PathBuf>,
        #[command(flatten)]
        sandbox: SandboxFlags,
    },
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Print every option a plan may use and every filter with its options, and what
    /// each value must be, as a job of this size bounds them.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// As docs/POLICY.md's Markdown table.
        #[arg(long, conflicts_with = "json")]
        markdown: bool,
        #[command(flatten)]
        job: PolicyJob,
    },
    /// Check a plan (the JSON `plan` prints, or its `plan` part alone) against the
    /// policy, without running anything. Exit 0 when it passes, 3 with every violation when not.
    Check {
        /// The plan's JSON file.
        plan: PathBuf,
        /// How many staged inputs the job has (the song and each distinct clip); taken
        /// from the file when it is `plan`'s whole output.
        #[arg(long)]
        inputs: Option<u32>,
        #[command(flatten)]
        job: PolicyJob,
    },
}

/// The job the policy's bounds are taken from.
#[derive(Args, Clone)]
pub struct PolicyJob {
    /// The output's frame size.
    #[arg(long, default_value_t = 1280, value_parser = clap::value_parser!(u32).range(16..=3840))]
    pub width: u32,
    #[arg(long, default_value_t = 720, value_parser = clap::value_parser!(u32).range(16..=2160))]
    pub height: u32,
    /// The longer of the video and its longest input, in seconds.
    #[arg(long, default_value_t = 600.0)]
    pub seconds: f64,
}

#[derive(Subcommand)]
pub enum Command {
    /// Tools for plugin authors.
    Plugin {
        #[command(subcommand)]
        action: PluginCommand,
    },
    /// The plan policy's allow-lists, and checking a plan against them offline.
    Policy {
        #[command(subcommand)]
        action: PolicyCommand,
    },
    /// Check a blueprint in the sandbox and explain every problem, and every adjustment a
    /// lenient check makes to its timeline.
    Validate {
        /// Blueprint file, or '-' for stdin; without it, BLUEPRINT_JSON.
        file: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        timeline: TimelineFlags,
        /// Accept object keys written as `gs://BUCKET/...` addresses in this bucket, as a job
        /// reading from it does.
        #[arg(long, env = "GCS_BUCKET_NAME")]
        bucket: Option<String>,
        /// The job's key rule, for reading such an address as a key (see `run`).
        #[arg(long, env = "GCS_STRIP_PREFIX", default_value = "data/", hide = true)]
        strip_prefix: String,
        #[arg(long, env = "GCS_OBJECT_PREFIX", default_value = "", hide = true)]
        object_prefix: String,
        #[command(flatten)]
        sandbox: SandboxFlags,
    },
    /// Make the video a blueprint describes: validate, fetch, probe, plan, encode, store.
    /// Prints one JSON status line per change on stdout.
    Run {
        #[command(flatten)]
        job: JobFlags,
        /// Make every video of a task-array manifest (a file or gs:// address) instead of
        /// one blueprint: this task's share (CLOUD_RUN_TASK_INDEX/COUNT, else all), each
        /// entry as its own run.
        #[arg(long, env = "BLUEPRINT_MANIFEST_URI", conflicts_with = "file")]
        manifest: Option<String>,
        /// Write the plan request the job hands to the guest (JSON) to FILE, before the
        /// guest plans: `plugin call plan FILE` replays it.
        #[arg(long, value_name = "FILE", conflicts_with = "manifest")]
        save_plan_request: Option<PathBuf>,
    },
    /// The container's entrypoint: `run` configured from the environment (every
    /// variable checked at start), reporting to the backend's `choreography_tasks` row
    /// when DB_* or DATABASE_URL is set (else status lines on stdout), logs as JSON on
    /// stdout; SIGTERM stops it cleanly.
    Job {
        #[command(flatten)]
        job: JobFlags,
        /// The backend's task id; must match the blueprint's `task_id`.
        #[arg(long, env = "TASK_ID")]
        task_id: Option<String>,
        /// How long to keep trying to write the final status when the database is down, in seconds.
        #[arg(long, env = "STATUS_FLUSH_SECS", default_value_t = 30, value_parser = number_setting::<u64>("STATUS_FLUSH_SECS"))]
        status_flush_secs: u64,
    },
    /// Run the job and report where its memory went, per stage and FFmpeg step, as the
    /// container's limit counts it (processes and work-folder files); with --iterations,
    /// also whether the host grows from one job to the next. Writes JSON and prints a table.
    Memcheck {
        #[command(flatten)]
        job: JobFlags,
        /// Run the job this many times in one process (a leak check).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
        iterations: u32,
        /// Where the JSON report goes.
        #[arg(long, default_value = "memory_usage_results.json")]
        out: PathBuf,
    },
    /// Re-encode clips once at an output profile (short closed GOPs) into
    /// `prepared/<profile>/<key>` with a manifest: a blueprint's clips (FILE or
    /// BLUEPRINT_JSON), or with --all every .mp4 under a prefix of the local folder.
    /// Skips clips already prepared from the same source; prints a JSON summary.
    Prepare {
        #[command(flatten)]
        job: JobFlags,
        #[command(flatten)]
        prepare: PrepareFlags,
    },
    /// Validate, fetch, probe and plan, check the plan against the policy, and print it
    /// as JSON without running anything.
    Plan {
        #[command(flatten)]
        job: JobFlags,
        /// Plan from these media facts (JSON: the `inputs` list `plan` prints, the song
        /// first, then each distinct clip) instead of fetching and probing the media:
        /// for trying a plugin without media.
        #[arg(long)]
        facts: Option<PathBuf>,
        /// Write the plan request handed to the guest (JSON) to FILE, before the guest
        /// plans: `plugin call plan FILE` replays it.
        #[arg(long, value_name = "FILE")]
        save_plan_request: Option<PathBuf>,
    },
    /// Measure the sandbox: guest load time, then repeated validations of one blueprint
    /// (prints JSON; used by `scripts/bench`).
    #[command(hide = true)]
    BenchValidate {
        file: String,
        #[arg(long, default_value_t = 200)]
        iterations: u32,
        #[command(flatten)]
        sandbox: SandboxFlags,
    },
    /// Download objects with the job's storage settings and print timings (JSON; used
    /// by `scripts/bench`).
    #[command(hide = true)]
    BenchFetch {
        keys: Vec<String>,
        #[command(flatten)]
        storage: StorageFlags,
    },
    /// Compile the guest ahead of time into the cache (for container images).
    Precompile {
        #[command(flatten)]
        sandbox: SandboxFlags,
    },
}
