//! Where the tests, benchmarks and examples find the upstream fixtures: the Kubeflow Pipelines
//! and Kubeflow renders and compiled KFP workflows listed in `scripts/upstream.pins`. They are
//! never in the repository. The first of these that applies is used:
//!
//! 1. `$KFP_MESH_UPSTREAM`;
//! 2. `../shared/upstream` next to the clone (the offline mirror on the project's machines);
//! 3. the cache `scripts/fetch-upstream` fills:
//!    `${KFP_MESH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kfp-mesh}/upstream`, when it was made
//!    from today's pins.
//!
//! With none of them a test fails with one message naming both ways to get the fixtures.
//! `scripts/fetch-upstream --locate` applies the same rules.

pub mod profiles;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The pins the cache must have been made from (the cache keeps a copy as `PINS`).
const PINS: &str = include_str!("../../../scripts/upstream.pins");

/// The repository's root directory.
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What the environment says, for [`locate`].
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `KFP_MESH_UPSTREAM`
    pub upstream: Option<PathBuf>,
    /// `KFP_MESH_CACHE`
    pub cache: Option<PathBuf>,
    /// `XDG_CACHE_HOME`
    pub xdg_cache_home: Option<PathBuf>,
    /// `HOME`
    pub home: Option<PathBuf>,
}

impl Env {
    /// The process environment.
    pub fn current() -> Self {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Env {
            upstream: var("KFP_MESH_UPSTREAM"),
            cache: var("KFP_MESH_CACHE"),
            xdg_cache_home: var("XDG_CACHE_HOME"),
            home: var("HOME"),
        }
    }

    /// The cache directory `scripts/fetch-upstream` writes.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        let root = match (&self.cache, &self.xdg_cache_home, &self.home) {
            (Some(c), _, _) => c.clone(),
            (None, Some(x), _) => x.join("kfp-mesh"),
            (None, None, Some(h)) => h.join(".cache/kfp-mesh"),
            (None, None, None) => return None,
        };
        Some(root.join("upstream"))
    }
}

/// The directory of the fixtures under `env`, with the mirror expected at `mirror` (normally
/// `../shared/upstream`), or the one message that says how to get them.
pub fn locate(env: &Env, mirror: &Path) -> Result<PathBuf, String> {
    if let Some(dir) = &env.upstream {
        return if dir.is_dir() {
            Ok(dir.clone())
        } else {
            Err(no_fixtures(
                env,
                &format!("KFP_MESH_UPSTREAM={} is not a directory.", dir.display()),
            ))
        };
    }
    if mirror.is_dir() {
        return Ok(mirror.to_path_buf());
    }
    let Some(cache) = env.cache_dir() else {
        return Err(no_fixtures(
            env,
            "Neither KFP_MESH_UPSTREAM is set, nor is there a ../shared/upstream next to the clone, and neither KFP_MESH_CACHE nor HOME says where the cache is.",
        ));
    };
    match std::fs::read_to_string(cache.join("PINS")) {
        Ok(pins) if pins == PINS => Ok(cache),
        Ok(_) => Err(no_fixtures(
            env,
            &format!(
                "The cache {} was made from other pins than scripts/upstream.pins.",
                cache.display()
            ),
        )),
        Err(_) => Err(no_fixtures(
            env,
            &format!(
                "Neither KFP_MESH_UPSTREAM is set, nor is there a ../shared/upstream next to the clone, nor a cache at {}.",
                cache.display()
            ),
        )),
    }
}

fn no_fixtures(env: &Env, why: &str) -> String {
    let cache = env
        .cache_dir()
        .map(|c| c.display().to_string())
        .unwrap_or_else(|| "$KFP_MESH_CACHE/upstream".to_string());
    format!(
        "the upstream KFP fixtures the tests read are not available.\n{why}\n\
         Get them one of two ways:\n  \
         * with network access to GitHub: scripts/fetch-upstream\n    \
         (renders them from the pins in scripts/upstream.pins into {cache}), or\n  \
         * offline: set KFP_MESH_UPSTREAM to a mirror of them, a directory with the files listed in\n    \
         scripts/upstream.pins (such as ../shared/upstream; check one with\n    \
         scripts/fetch-upstream --verify DIR)."
    )
}

/// The fixtures directory of this process (see the crate documentation). Panics with the message
/// that says how to get the fixtures when there is none: a test without its inputs fails.
pub fn upstream_dir() -> PathBuf {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match DIR.get_or_init(|| locate(&Env::current(), &repo_dir().join("../shared/upstream"))) {
        Ok(dir) => dir.clone(),
        Err(message) => panic!("{message}"),
    }
}

/// The path of one fixture, e.g. `upstream("workflows/kfp-master-hello_world.yaml")`.
pub fn upstream(file: &str) -> PathBuf {
    upstream_dir().join(file)
}

/// The text of one fixture; panics naming the file when it cannot be read.
pub fn read_upstream(file: &str) -> String {
    let path = upstream(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (an upstream fixture listed in scripts/upstream.pins; check the directory with scripts/fetch-upstream --verify {})",
            path.display(),
            upstream_dir().display()
        )
    })
}

/// Every YAML file of the fixtures directory, its subdirectories included (renders and
/// compiled workflows); panics when there are fewer than ten (a test without its inputs fails).
pub fn upstream_yaml_files() -> Vec<PathBuf> {
    let dir = upstream_dir();
    let mut files = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
            .flatten();
        for path in entries.map(|e| e.path()) {
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(files.len() > 10, "upstream fixtures in {}", dir.display());
    files
}

/// The files `scripts/upstream.pins` lists (the first column), in its order.
pub fn pinned_files() -> Vec<&'static str> {
    PINS.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("kfp-mesh-testdata-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        dir
    }

    #[test]
    fn the_variable_wins_then_the_mirror_then_a_current_cache() {
        let root = tempdir("order");
        let (var, mirror, home) = (root.join("var"), root.join("mirror"), root.join("home"));
        let cache = home.join(".cache/kfp-mesh/upstream");
        for d in [&var, &mirror, &cache] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(cache.join("PINS"), PINS).expect("write PINS");
        let env = Env {
            upstream: Some(var.clone()),
            home: Some(home.clone()),
            ..Env::default()
        };
        assert_eq!(locate(&env, &mirror), Ok(var));
        let env = Env {
            home: Some(home.clone()),
            ..Env::default()
        };
        assert_eq!(locate(&env, &mirror), Ok(mirror.clone()));
        assert_eq!(locate(&env, &root.join("no-mirror")), Ok(cache.clone()));
        // XDG_CACHE_HOME and KFP_MESH_CACHE move the cache.
        let xdg = Env {
            xdg_cache_home: Some(home.join(".cache")),
            ..Env::default()
        };
        assert_eq!(locate(&xdg, &root.join("no-mirror")), Ok(cache.clone()));
        let own = Env {
            cache: Some(home.join(".cache/kfp-mesh")),
            home: Some(root.join("elsewhere")),
            ..Env::default()
        };
        assert_eq!(locate(&own, &root.join("no-mirror")), Ok(cache));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn nothing_at_all_is_one_message_naming_both_ways() {
        let root = tempdir("none");
        let env = Env {
            home: Some(root.join("home")),
            ..Env::default()
        };
        let err = locate(&env, &root.join("no-mirror")).expect_err("no fixtures");
        assert!(err.contains("scripts/fetch-upstream"), "{err}");
        assert!(err.contains("KFP_MESH_UPSTREAM"), "{err}");
        assert!(
            err.contains(
                &root
                    .join("home/.cache/kfp-mesh/upstream")
                    .display()
                    .to_string()
            ),
            "{err}"
        );

        // A variable naming nothing is not silently replaced by a default.
        let env = Env {
            upstream: Some(root.join("missing")),
            ..Env::default()
        };
        let err = locate(&env, &root).expect_err("bad variable");
        assert!(err.contains("is not a directory"), "{err}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_cache_from_other_pins_is_not_used() {
        let root = tempdir("stale");
        let cache = root.join("cache/upstream");
        std::fs::create_dir_all(&cache).expect("mkdir");
        std::fs::write(cache.join("PINS"), "# older pins\n").expect("write PINS");
        let env = Env {
            cache: Some(root.join("cache")),
            ..Env::default()
        };
        let err = locate(&env, &root.join("no-mirror")).expect_err("stale cache");
        assert!(err.contains("other pins"), "{err}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn the_pins_list_every_fixture_once() {
        let files = pinned_files();
        assert_eq!(files.len(), 24, "{files:?}");
        let mut sorted = files.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), files.len());
        for line in PINS
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let cols: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(cols.len(), 7, "{line}");
            assert!(
                cols[1].len() == 64 && cols[1].chars().all(|c| c.is_ascii_hexdigit()),
                "{line}"
            );
            assert!(matches!(cols[5], "kustomize" | "blob"), "{line}");
        }
    }
}
