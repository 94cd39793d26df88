//! What an installation needs from the binary itself: the name it was invoked with (the kubectl
//! plugin), shell completions and man pages. Completions and pages are generated from the same
//! clap definitions that parse the command line, so they cannot drift from `--help`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Command;

/// `kfp-mesh completion SHELL`
#[derive(clap::Args)]
pub struct CompletionArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// `kfp-mesh man DIR`
#[derive(clap::Args)]
pub struct ManArgs {
    /// Directory to write the pages into (created when missing): kfp-mesh.1 and one
    /// kfp-mesh-SUBCOMMAND.1 per subcommand.
    dir: PathBuf,
}

/// How the user invoked the binary, as help and errors should show it: `kubectl kfp-mesh` when
/// run as the kubectl plugin (`kubectl-kfp_mesh`, directly or through kubectl), else the file
/// name (`kfp-mesh`). `None` when argv\[0\] is missing or not UTF-8.
pub fn invoked_name(argv0: Option<&OsStr>) -> Option<String> {
    let file = Path::new(argv0?).file_name()?.to_str()?;
    // A Windows build would be invoked as `kubectl-kfp_mesh.exe`.
    let file = file.strip_suffix(".exe").unwrap_or(file);
    match file.strip_prefix("kubectl-") {
        Some(plugin) if !plugin.is_empty() => Some(format!("kubectl {}", plugin.replace('_', "-"))),
        _ => Some(file.to_string()),
    }
}

/// The command as it should present itself when invoked as `shown`: the usage lines of every
/// subcommand follow from the bin name, and the example lines of the help texts (lines that
/// start with `kfp-mesh ` or pipe into it) name the same command the user typed.
pub fn presented_as(cmd: Command, shown: &str) -> Command {
    if shown == "kfp-mesh" {
        return cmd.bin_name(shown);
    }
    rename_examples(cmd, shown).bin_name(shown)
}

fn rename_examples(mut cmd: Command, shown: &str) -> Command {
    if let Some(text) = cmd.get_after_help() {
        let text = rename_example_lines(&text.to_string(), shown);
        cmd = cmd.after_help(text);
    }
    if let Some(text) = cmd.get_after_long_help() {
        let text = rename_example_lines(&text.to_string(), shown);
        cmd = cmd.after_long_help(text);
    }
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        cmd = cmd.mut_subcommand(name, |sub| rename_examples(sub, shown));
    }
    cmd
}

/// `  kfp-mesh check -f x` → `  kubectl kfp-mesh check -f x`; `... | kfp-mesh check -f -` →
/// `... | kubectl kfp-mesh check -f -`. Prose that mentions kfp-mesh is left alone.
fn rename_example_lines(text: &str, shown: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let indent = line.len() - line.trim_start().len();
        let (head, rest) = line.split_at(indent);
        let rest = match rest.strip_prefix("kfp-mesh ") {
            Some(args) => format!("{shown} {args}"),
            None => rest.to_string(),
        };
        out.push_str(head);
        out.push_str(&rest.replace("| kfp-mesh ", &format!("| {shown} ")));
    }
    out
}

/// Write the completion script for `kfp-mesh` (the installed binary's name: shells complete the
/// command as it is typed, and the kubectl plugin is completed by kubectl itself).
pub fn completion(args: CompletionArgs, mut cmd: Command) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "kfp-mesh", &mut script);
    let mut script = String::from_utf8(script).context("the completion script is not UTF-8")?;
    if matches!(args.shell, clap_complete::Shell::Bash) {
        script = fix_bash_hyphenated_bin(&script);
    }
    use std::io::Write;
    std::io::stdout()
        .lock()
        .write_all(script.as_bytes())
        .context("cannot write the completion script")?;
    Ok(())
}

/// clap_complete 4.6's bash script names the state of a subcommand of a hyphenated binary two
/// ways (`kfp__mesh__subcmd__check` where it is set, `kfp__subcmd__mesh__subcmd__check` where
/// it is matched), so no subcommand's options complete (clap-rs/clap#6421). Spell the matched
/// labels the way they are set; once clap_complete is fixed this changes nothing.
fn fix_bash_hyphenated_bin(script: &str) -> String {
    script.replace("kfp__subcmd__mesh__subcmd__", "kfp__mesh__subcmd__")
}

/// Write one man page per command into `args.dir`.
pub fn man(args: ManArgs, cmd: Command) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(&args.dir).with_context(|| {
        format!(
            "cannot create the man page directory {}",
            args.dir.display()
        )
    })?;
    clap_mangen::generate_to(cmd.bin_name("kfp-mesh"), &args.dir)
        .with_context(|| format!("cannot write man pages into {}", args.dir.display()))?;
    let mut written: Vec<PathBuf> = std::fs::read_dir(&args.dir)
        .with_context(|| format!("cannot list {}", args.dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension() == Some(OsStr::new("1"))
                && p.file_name()
                    .and_then(OsStr::to_str)
                    .is_some_and(|n| n.starts_with("kfp-mesh"))
        })
        .collect();
    written.sort();
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_file_names_map_to_the_kubectl_command() {
        let name = |s: &str| invoked_name(Some(OsStr::new(s)));
        assert_eq!(
            name("/home/u/.krew/bin/kubectl-kfp_mesh").as_deref(),
            Some("kubectl kfp-mesh")
        );
        assert_eq!(
            name("kubectl-kfp_mesh.exe").as_deref(),
            Some("kubectl kfp-mesh")
        );
        assert_eq!(name("/usr/local/bin/kfp-mesh").as_deref(), Some("kfp-mesh"));
        assert_eq!(name("kubectl-").as_deref(), Some("kubectl-"));
        assert_eq!(invoked_name(None), None);
    }

    #[test]
    fn only_example_lines_are_renamed() {
        let text = "Examples:\n  kfp-mesh check -f x\n  kubectl kustomize d | kfp-mesh check -f -\n\
                    Deploy the kfp-mesh components first.";
        assert_eq!(
            rename_example_lines(text, "kubectl kfp-mesh"),
            "Examples:\n  kubectl kfp-mesh check -f x\n  kubectl kustomize d | kubectl kfp-mesh check -f -\n\
             Deploy the kfp-mesh components first."
        );
    }
}
