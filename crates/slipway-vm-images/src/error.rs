//! [`BuildError`]: why a step of a VM image build failed — the one error
//! type the crate's modules (base images, disks, the customizer sandbox,
//! the build VM, sources and distributors) hand each other. Its `Display`
//! is the text a run's `customization.log` and `lastRunStatus.message`
//! show, so every variant names what was being done and with what.

use slipway_hostfs::HostFsError;

/// A failed build step. The variant says whose side failed: the host's
/// tools and files, the image's tree, the template's values, the sources
/// it names, a customizer, or the builder.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A host program could not be started (usually: not installed).
    #[error("{program}: {source} (is it installed? scripts/setup-host installs it)")]
    ToolMissing {
        /// The program, as run.
        program: String,
        /// Why it did not start.
        #[source]
        source: std::io::Error,
    },
    /// A host program ended unsuccessfully.
    #[error("{command}: {output}")]
    ToolFailed {
        /// The program and its arguments, space-separated.
        command: String,
        /// What it said: its standard error, trimmed, then the last 2,000
        /// bytes of its standard output after `stdout: ` when it printed
        /// any.
        output: String,
    },
    /// A program run for a customizer (in the sandbox or the build VM)
    /// ended unsuccessfully; its output is in the run's log.
    #[error("{}", match .code { Some(c) => format!("exit status {c}"), None => "killed by a signal".to_string() })]
    Exited {
        /// Its exit status; `None` when a signal ended it.
        code: Option<i32>,
    },
    /// A file operation on the host failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path (e.g. "creating /x").
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A path given to a host tool is not UTF-8.
    #[error("{what} is not UTF-8")]
    NotUtf8 {
        /// Which path ("disk path", "mount path").
        what: &'static str,
    },
    /// A read or write beneath the mounted image's root was refused (an
    /// entry leading out of it) or failed.
    #[error("in the image: {0}")]
    InImage(#[source] HostFsError),
    /// The template asks for something this builder cannot do; the text
    /// names the field, the value and what was expected.
    #[error("{0}")]
    Template(String),
    /// An image id in the template names no managed or gallery image.
    #[error(transparent)]
    ImageId(#[from] slipway_core::images::ids::ImageIdError),
    /// `vmProfile.vmSize` is not a size the builder can shape.
    #[error(transparent)]
    VmSize(#[from] slipway_core::images::template::UnknownVmSize),
    /// A source the template names (image, script, file, upload) is
    /// missing, unreadable or does not match its checksum.
    #[error("{0}")]
    Source(String),
    /// The builder failed: the build VM (boot, SSH, shutdown), the build's
    /// network, or a worker thread.
    #[error("{0}")]
    Builder(String),
    /// A distributor's image or gallery version exists already.
    #[error("image '{id}' already exists")]
    ImageExists {
        /// The image id.
        id: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] slipway_store::StoreError),
}

impl BuildError {
    /// An I/O error with what was being done: `BuildError::io("creating /x")(e)`.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildError {
        let context = context.into();
        move |source| BuildError::Io { context, source }
    }
}

impl From<HostFsError> for BuildError {
    fn from(e: HostFsError) -> BuildError {
        BuildError::InImage(e)
    }
}
