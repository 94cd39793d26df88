//! `kfp-mesh`: Kubeflow Pipelines under Istio STRICT mTLS, predicted and fixed.

mod alloc;
mod check;
mod input;
mod install;
mod tls_check;
mod verify;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

// mimalloc instead of the system allocator: `check` over a large cluster and the webhook's
// reviews allocate many small objects from several threads, where glibc's malloc cost a third
// of the CPU (figures in docs/performance.md).
#[global_allocator]
static GLOBAL: alloc::Allocator = alloc::Allocator;

/// A large value a one-shot command no longer needs when it is about to exit, left to the
/// process exit: the operating system takes the memory back at once, where freeing tens of
/// thousands of flows and findings one by one costs time (the drop does nothing but free).
pub fn leave_to_exit<T>(value: T) {
    std::mem::forget(value);
}

/// Exit codes, the same for every subcommand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// Success: nothing to report.
    Ok = 0,
    /// The analysis found what it was asked to report (a failing connection, findings).
    Findings = 1,
    /// The command line is wrong.
    Usage = 2,
    /// The input could not be read, has malformed documents, or lacks a named object.
    BadInput = 3,
    /// The environment is not usable: a tool the command needs is missing (kubectl), or the
    /// cluster cannot be read (no kubeconfig, unreachable, credentials or RBAC refused).
    Environment = 4,
}

/// `tls-check`'s output formats, named as `check` and `verify` name theirs.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum OutputFormat {
    /// For people (`text` is accepted too, the name of earlier releases).
    #[value(alias = "text")]
    Table,
    Json,
}

/// A usage error (exit code 2).
#[derive(Debug)]
pub struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

pub fn usage(msg: &str) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.to_string()))
}

/// An environment error (exit code 4): a missing tool, a cluster that cannot be read.
#[derive(Debug)]
pub struct EnvironmentError(String);

impl std::fmt::Display for EnvironmentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EnvironmentError {}

pub fn environment(msg: String) -> anyhow::Error {
    anyhow::Error::new(EnvironmentError(msg))
}

/// The exit code of an error, from its type.
fn exit_code_of(e: &anyhow::Error) -> ExitCode {
    if e.downcast_ref::<UsageError>().is_some() {
        ExitCode::Usage
    } else if e.downcast_ref::<EnvironmentError>().is_some()
        || e.chain().any(|c| {
            c.downcast_ref::<kfp_mesh_cluster::error::ClusterError>()
                .is_some()
        })
    {
        ExitCode::Environment
    } else {
        ExitCode::BadInput
    }
}

#[derive(Parser)]
#[command(
    name = "kfp-mesh",
    version,
    about = "Kubeflow Pipelines under Istio STRICT mTLS: predict every connection, explain it, fix it",
    after_help = "Exit codes: 0 ok, 1 findings / failing connection, 2 usage error, 3 bad input, 4 environment (kubectl missing, cluster not readable)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Predict every Kubeflow Pipelines flow from manifests (run pods included) and report
    /// findings; with no input, runs on a built-in example.
    Check(check::CheckArgs),
    /// Explain one connection: sidecars, effective PeerAuthentication, the client's TLS,
    /// authorization (replaces the removed `istioctl authn tls-check`).
    TlsCheck(Box<tls_check::TlsCheckArgs>),
    /// `check` on the live cluster of the current kube context, plus live facts: run pods with
    /// and without istio-proxy, pods stuck on their sidecar, the kfp-mesh webhook's health.
    Verify(Box<verify::VerifyCmd>),
    /// Run the KFP run-pod admission webhook (HTTPS): puts driver (and, when configured,
    /// executor and importer) pods into the mesh on every KFP release.
    Webhook(Box<kfp_mesh_webhook::WebhookArgs>),
    /// List the finding codes (`--markdown`: the text of docs/findings.md).
    Findings(FindingsArgs),
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell
    /// (e.g. `kfp-mesh completion bash > ~/.local/share/bash-completion/completions/kfp-mesh`).
    Completion(install::CompletionArgs),
    /// Write the man pages (kfp-mesh.1, kfp-mesh-check.1, ...) into a directory
    /// (e.g. `kfp-mesh man ~/.local/share/man/man1`).
    Man(install::ManArgs),
}

#[derive(clap::Args)]
struct FindingsArgs {
    #[arg(long)]
    markdown: bool,
}

fn findings(args: FindingsArgs) -> anyhow::Result<ExitCode> {
    if args.markdown {
        print!("{}", kfp_mesh_kfp::findings::markdown());
    } else {
        for k in kfp_mesh_kfp::findings::kinds() {
            println!(
                "{}  {:<8} {:<36} {}",
                k.code,
                k.severity.as_str(),
                k.name,
                k.summary
            );
        }
    }
    Ok(ExitCode::Ok)
}

/// A one-shot command keeps the memory it frees for its next allocations instead of handing it
/// back to the kernel after 10 ms (mimalloc's default, right for the long-running webhook): on a
/// large input the check frees and allocates gigabytes, and every page handed back and taken
/// again is zeroed by the kernel once more (docs/performance.md: 2.4 s less system time at 5,000
/// profiles).
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        // Stated in the environment: mimalloc reads it, and it wins.
        return;
    }
    // `mi_option_purge_delay` of mimalloc.h (v2 and v3): -1 purges never.
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets a process-wide option of the allocator; mimalloc reads it when it decides to
    // purge, and setting it from the main thread at any time is supported.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
    }
}

/// A one-shot command takes its memory in 4 KiB pages, not 2 MiB transparent huge pages: the
/// kernel zeroes a whole huge page on its first touch and has to find (compact) one first, which
/// on a large input cost more system time than the huge pages save in TLB misses
/// (docs/performance.md: 0.4 to 0.8 s less system time at 5,000 profiles). The webhook keeps
/// the system's setting.
fn small_pages_only() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        // Stated in the environment: mimalloc has applied it at start.
        return;
    }
    // The flag is inherited by child processes (`kubectl kustomize` for `-k`): harmless there.
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE sets a flag of this process's memory map that the kernel reads
    // when it handles a page fault; it takes no pointers. The arguments are passed as the
    // `unsigned long`s the kernel reads (it refuses non-zero unused ones). It fails only on
    // kernels older than 3.15, and then nothing changes.
    unsafe {
        let (on, unused): (libc::c_ulong, libc::c_ulong) = (1, 0);
        libc::prctl(libc::PR_SET_THP_DISABLE, on, unused, unused, unused);
    }
}

fn main() {
    // Behave like other Unix tools when the reader of stdout goes away (`| head`): end quietly
    // instead of failing on a broken pipe.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Help and errors name the command the way it was invoked: `kubectl kfp-mesh` as the
    // kubectl plugin (binary or link `kubectl-kfp_mesh`), else `kfp-mesh`.
    let shown = install::invoked_name(std::env::args_os().next().as_deref())
        .unwrap_or_else(|| "kfp-mesh".to_string());
    let mut cmd = install::presented_as(Cli::command(), &shown);
    let matches = cmd.get_matches_mut();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut cmd).exit());
    // What a usage error points to: `kfp-mesh check --help`, `kubectl kfp-mesh check --help`.
    let help = match matches.subcommand_name() {
        Some(sub) => format!("{shown} {sub} --help"),
        None => format!("{shown} --help"),
    };
    if !matches!(cli.command, Command::Webhook(_)) {
        keep_freed_memory();
        small_pages_only();
    }
    let result = match cli.command {
        Command::Check(args) => check::run(args),
        Command::TlsCheck(args) => tls_check::run(*args),
        Command::Verify(args) => verify::run(*args),
        Command::Findings(args) => findings(args),
        Command::Webhook(args) => kfp_mesh_webhook::run(*args).map(|()| ExitCode::Ok),
        Command::Completion(args) => {
            install::completion(args, Cli::command()).map(|()| ExitCode::Ok)
        }
        Command::Man(args) => install::man(args, Cli::command()).map(|pages| {
            for page in pages {
                println!("{}", page.display());
            }
            ExitCode::Ok
        }),
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            let code = exit_code_of(&e);
            if matches!(code, ExitCode::Usage) {
                eprintln!("error: {e}\n\nFor more information, try '{help}'.");
            } else {
                eprintln!("error: {e:#}");
            }
            code
        }
    };
    std::process::exit(code as i32);
}
