//! Installing `kfp-mesh` as the README describes: the kubectl plugin (through the real
//! `kubectl`), shell completions (run by the real bash and fish, parsed by zsh) and man pages
//! (rendered by the real `man`). scripts/install-tools puts zsh and fish on the machine; a test
//! whose tool is missing fails and says so.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kfp-mesh"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kfp-mesh-install-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Run a tool the test needs; a missing tool is a failure that names the fix.
fn tool(program: &str, args: &[&str], why: &str) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("`{program}` is needed ({why}) and could not be run: {e}; scripts/install-tools installs it")
        })
}

/// A directory holding `kubectl-kfp_mesh`, a link to the built binary, as krew installs it.
fn plugin_dir(name: &str) -> PathBuf {
    let dir = tempdir(name);
    std::os::unix::fs::symlink(bin(), dir.join("kubectl-kfp_mesh")).expect("symlink");
    dir
}

fn kubectl_with_plugin(dir: &Path, args: &[&str]) -> Output {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(std::env::split_paths(&path));
    Command::new("kubectl")
        .args(args)
        .env("PATH", std::env::join_paths(paths).expect("PATH"))
        .output()
        .unwrap_or_else(|e| {
            panic!("`kubectl` is needed (it runs the plugin) and could not be run: {e}")
        })
}

#[test]
fn kubectl_finds_the_plugin_and_it_shows_the_name_it_was_invoked_with() {
    let dir = plugin_dir("plugin");

    let list = kubectl_with_plugin(&dir, &["plugin", "list"]);
    assert!(
        text(&list.stdout).contains("kubectl-kfp_mesh"),
        "kubectl plugin list does not show kubectl-kfp_mesh:\n{}{}",
        text(&list.stdout),
        text(&list.stderr)
    );

    let help = kubectl_with_plugin(&dir, &["kfp-mesh", "--help"]);
    assert_eq!(help.status.code(), Some(0), "{}", text(&help.stderr));
    let help = text(&help.stdout);
    assert!(help.contains("Usage: kubectl kfp-mesh <COMMAND>"), "{help}");

    // Examples in a subcommand's help name the command the user typed.
    let help = kubectl_with_plugin(&dir, &["kfp-mesh", "check", "--help"]);
    let help = text(&help.stdout);
    assert!(help.contains("Usage: kubectl kfp-mesh check"), "{help}");
    assert!(
        help.lines()
            .any(|l| l.trim_start().starts_with("kubectl kfp-mesh check")),
        "no example line names `kubectl kfp-mesh check`:\n{help}"
    );
    assert!(
        !help
            .lines()
            .any(|l| l.trim_start().starts_with("kfp-mesh ")),
        "an example still starts with bare `kfp-mesh`:\n{help}"
    );

    // clap's own usage errors.
    let bad = kubectl_with_plugin(&dir, &["kfp-mesh", "check", "--no-such-flag"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = text(&bad.stderr);
    assert!(err.contains("Usage: kubectl kfp-mesh check"), "{err}");

    // kfp-mesh's own usage errors.
    let bad = kubectl_with_plugin(&dir, &["kfp-mesh", "check", "--suppress", "KM999"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = text(&bad.stderr);
    assert!(err.contains("try 'kubectl kfp-mesh check --help'"), "{err}");

    // And it works: the built-in example through kubectl.
    let run = kubectl_with_plugin(&dir, &["kfp-mesh", "findings"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    assert!(text(&run.stdout).contains("KM"), "{}", text(&run.stdout));

    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn plain_binary_keeps_its_name() {
    let o = Command::new(bin())
        .args(["check", "--suppress", "KM999"])
        .output()
        .expect("kfp-mesh runs");
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.contains("try 'kfp-mesh check --help'"), "{err}");
    assert!(!err.contains("kubectl"), "{err}");
}

fn completion(shell: &str) -> String {
    let o = Command::new(bin())
        .args(["completion", shell])
        .output()
        .expect("kfp-mesh runs");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    text(&o.stdout)
}

/// Every subcommand name of the built binary, from its own help.
fn subcommands() -> Vec<String> {
    let o = Command::new(bin())
        .arg("--help")
        .output()
        .expect("kfp-mesh runs");
    let help = text(&o.stdout);
    let names: Vec<String> = help
        .split("Commands:\n")
        .nth(1)
        .expect("a Commands section")
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect();
    assert!(names.len() >= 7, "{names:?}");
    names
}

#[test]
fn bash_completion_completes_subcommands_and_flags() {
    let dir = tempdir("bash");
    let script = dir.join("kfp-mesh.bash");
    std::fs::write(&script, completion("bash")).expect("write");
    // What bash does on <TAB>: call the function registered with `complete -F` with the
    // command, the word being completed and the one before it.
    let probe = r#"
source "$1"
f=$(complete -p kfp-mesh | sed -E 's/.*-F ([^ ]+).*/\1/')
complete_line() {
  COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}
  read -r -a COMP_WORDS <<<"$1"
  [[ "$1" == *" " ]] && COMP_WORDS+=("")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMPREPLY=()
  "$f" kfp-mesh "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
  echo "$1 => ${COMPREPLY[*]}"
}
complete_line "kfp-mesh "
complete_line "kfp-mesh tls"
complete_line "kfp-mesh check --fail"
complete_line "kfp-mesh check --fail-on "
complete_line "kfp-mesh completion "
"#;
    let o = tool(
        "bash",
        &["-c", probe, "probe", script.to_str().expect("utf-8 path")],
        "runs the bash completion",
    );
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    let line = |prefix: &str| -> Vec<String> {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{prefix} => ")))
            .unwrap_or_else(|| panic!("no result for `{prefix}`:\n{out}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let top = line("kfp-mesh ");
    for sub in subcommands() {
        assert!(top.contains(&sub), "`kfp-mesh <TAB>` lacks {sub}: {top:?}");
    }
    assert_eq!(line("kfp-mesh tls"), ["tls-check"]);
    assert_eq!(line("kfp-mesh check --fail"), ["--fail-on"]);
    assert_eq!(
        line("kfp-mesh check --fail-on "),
        ["error", "warning", "never"]
    );
    let shells = line("kfp-mesh completion ");
    for shell in ["bash", "zsh", "fish"] {
        assert!(shells.contains(&shell.to_string()), "{shells:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fish_completion_completes_subcommands_and_flags() {
    let dir = tempdir("fish");
    let script = dir.join("kfp-mesh.fish");
    std::fs::write(&script, completion("fish")).expect("write");
    // `complete -C LINE` prints what fish offers for LINE, one candidate (TAB description) a line.
    let probe = format!(
        "source {}; complete -C 'kfp-mesh '; echo ---; complete -C 'kfp-mesh check --fail-on '",
        script.display()
    );
    let o = tool(
        "fish",
        &["--no-config", "-c", &probe],
        "runs the fish completion",
    );
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    let (top, fail_on) = out.split_once("---\n").expect("two parts");
    let first = |s: &str| -> Vec<String> {
        s.lines()
            .filter_map(|l| l.split('\t').next())
            .map(str::to_string)
            .collect()
    };
    let top = first(top);
    for sub in subcommands() {
        assert!(
            top.contains(&sub),
            "fish `kfp-mesh <TAB>` lacks {sub}: {top:?}"
        );
    }
    let mut fail_on = first(fail_on);
    fail_on.sort();
    assert_eq!(fail_on, ["error", "never", "warning"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn zsh_completion_is_valid_zsh_for_every_subcommand() {
    let dir = tempdir("zsh");
    let script = dir.join("_kfp-mesh");
    let text_ = completion("zsh");
    assert!(
        text_.starts_with("#compdef kfp-mesh\n"),
        "{}",
        &text_[..80.min(text_.len())]
    );
    for sub in subcommands() {
        assert!(
            text_.contains(&format!("'{sub}:")),
            "zsh script lacks {sub}"
        );
    }
    std::fs::write(&script, &text_).expect("write");
    let o = tool(
        "zsh",
        &["-n", script.to_str().expect("utf-8 path")],
        "checks the zsh completion's syntax",
    );
    assert_eq!(o.status.code(), Some(0), "zsh -n: {}", text(&o.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn man_pages_cover_every_subcommand_and_flag() {
    let dir = tempdir("man");
    let o = Command::new(bin())
        .arg("man")
        .arg(dir.join("man1"))
        .output()
        .expect("kfp-mesh runs");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let mut pages: Vec<String> = std::fs::read_dir(dir.join("man1"))
        .expect("man1 written")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    let mut want: Vec<String> = subcommands()
        .iter()
        .map(|s| format!("kfp-mesh-{s}.1"))
        .chain(["kfp-mesh.1".to_string()])
        .collect();
    want.sort();
    assert_eq!(pages, want);
    // The command prints what it wrote, one path a line.
    assert_eq!(
        text(&o.stdout).lines().count(),
        want.len(),
        "{}",
        text(&o.stdout)
    );

    for sub in subcommands() {
        let page = dir.join("man1").join(format!("kfp-mesh-{sub}.1"));
        // groff's warnings (-ww) are roff mistakes; -z formats without output.
        let lint = tool(
            "groff",
            &["-man", "-ww", "-z", page.to_str().expect("utf-8 path")],
            "checks the man pages",
        );
        assert!(
            lint.stderr.is_empty(),
            "{}: {}",
            page.display(),
            text(&lint.stderr)
        );
        // No hyphenation or justification, ASCII: flags stay whole and searchable.
        let rendered = Command::new("man")
            .args(["--nh", "--nj", "-l"])
            .arg(&page)
            .env("LC_ALL", "C")
            .env("MANWIDTH", "200")
            .env("MANPAGER", "cat")
            .output()
            .unwrap_or_else(|e| panic!("`man` is needed to render the pages: {e}"));
        let rendered = text(&rendered.stdout);
        assert!(rendered.contains(&format!("kfp-mesh-{sub}")), "{rendered}");
        // Every long flag of `kfp-mesh SUB --help` is documented in the page.
        let help = Command::new(bin())
            .args([sub.as_str(), "--help"])
            .output()
            .expect("kfp-mesh runs");
        let help = text(&help.stdout);
        let flags: Vec<&str> = help
            .split_whitespace()
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(|w| w.trim_end_matches([',', '.', ')', '`', ':']))
            .filter(|w| {
                w.chars()
                    .skip(2)
                    .all(|c| c.is_ascii_lowercase() || c == '-')
            })
            .collect();
        assert!(!flags.is_empty() || sub == "findings", "{sub}: {help}");
        for flag in flags {
            assert!(
                rendered.contains(flag),
                "kfp-mesh-{sub}.1 lacks {flag}:\n{rendered}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
