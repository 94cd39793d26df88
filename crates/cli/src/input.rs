//! Reading the input: files, directories, stdin and `kubectl kustomize` output.
//!
//! Everything one run reads is capped at [`MAX_INPUT_BYTES`] in all, and reading stops there:
//! an input without end (`yes | kfp-mesh check -f -`, `-f /dev/zero`) is a size error, not a
//! machine out of memory. A directory walk follows symbolic links but reads each directory and
//! file once, and skips FIFOs, sockets and devices (reading them would block or never end).
//! What cannot be read is an input error (KM050) naming the file; the rest is analysed.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};
use kfp_mesh_core::inventory::{
    InputError, Inventory, MAX_INPUT_BYTES, StreamParser, parse_stream,
};

/// How much is read from a file, stdin or kubectl at a time.
const READ_PIECE: usize = 1 << 20;
use kfp_mesh_core::object::{Object, Origin};

/// Where to read Kubernetes objects from.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct InputArgs {
    /// Manifests to read: files, directories (recursively, *.yaml, *.yml, *.json, except
    /// kustomization files), or `-` for stdin. Multi-document YAML, JSON and `kind: List` are
    /// understood. Repeatable; at most 512 MiB in all.
    ///
    /// A directory walk follows symbolic links, reads each directory and file once, and skips
    /// FIFOs, sockets and devices (reported as input errors); name such a file with -f to read it.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Kustomize directories, rendered with `kubectl kustomize -- DIR`. Repeatable.
    ///
    /// Like `kubectl kustomize`, this fetches the remote bases and resources the kustomization
    /// names (git repositories, URLs); kustomize plugins, functions and Helm charts stay off
    /// (kubectl's defaults). Render a kustomization you do not trust yourself and pass the
    /// output with `-f -`.
    #[arg(short = 'k', long = "kustomize", value_name = "DIR")]
    pub kustomize: Vec<PathBuf>,
}

impl InputArgs {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.kustomize.is_empty()
    }
}

/// Read every source into one inventory. IO failures of what the command line names (a missing
/// file, kubectl not found or failing, more than [`MAX_INPUT_BYTES`]) are errors; a file of a
/// directory that cannot be read, and malformed documents, are kept in `Inventory::errors` and
/// the rest is analysed.
pub fn load(args: &InputArgs) -> Result<Inventory> {
    let mut reader = Reader::default();
    for path in &args.files {
        if path.as_os_str() == "-" {
            reader.read_stream("<stdin>", "<stdin>", std::io::stdin().lock())?;
        } else {
            let meta = std::fs::metadata(path)
                .map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
            if meta.is_dir() {
                reader.walk(path, &meta)?;
            } else {
                // Named on the command line: read whatever it is (a FIFO of `-f <(...)`, a
                // device), up to the cap.
                reader.read_file(path, &meta)?;
            }
        }
    }
    for dir in &args.kustomize {
        reader.kustomize(dir)?;
    }
    Ok(Inventory::from_objects(reader.objects, reader.errors))
}

/// Parse built-in text (the embedded examples).
pub fn load_builtin(name: &str, text: &str) -> Inventory {
    let (objects, errors) = parse_stream(name, text);
    Inventory::from_objects(objects, errors)
}

/// The state of one run's reading: what was read, and what is left of the cap.
#[derive(Default)]
struct Reader {
    objects: Vec<Object>,
    errors: Vec<InputError>,
    /// Bytes read so far, all sources together.
    read: usize,
    /// Directories and files already read, by device and inode, with the path they were read at.
    seen: HashMap<(u64, u64), PathBuf>,
}

impl Reader {
    fn skip(&mut self, path: &Path, why: String) {
        self.errors.push(InputError {
            origin: Origin::new(path.display().to_string(), 1),
            object: None,
            message: why,
        });
    }

    /// Read `r` to its end, but not past the cap, parsing it as it arrives (a YAML document is
    /// parsed once a later `---` line shows it has ended, so a large file is never held whole).
    /// On an error nothing of `r` is kept; the error names the source and, for the cap, the
    /// limit.
    /// `source` is what its objects cite, `name` what errors call it.
    fn read_stream(&mut self, source: &str, name: &str, mut r: impl Read) -> Result<()> {
        let (objects_before, errors_before) = (self.objects.len(), self.errors.len());
        let left = MAX_INPUT_BYTES.saturating_sub(self.read);
        let mut parser = StreamParser::new(source);
        let mut buf = vec![0u8; READ_PIECE];
        let mut got = 0usize;
        let failed = loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break Some(anyhow::Error::new(e).context(format!("cannot read {name}"))),
            };
            got += n;
            if got > left {
                break Some(anyhow!("{}", too_large(name, self.read)));
            }
            parser.push(
                buf.get(..n).unwrap_or_default(),
                &mut self.objects,
                &mut self.errors,
            );
        };
        if let Some(e) = failed {
            self.objects.truncate(objects_before);
            self.errors.truncate(errors_before);
            return Err(e);
        }
        self.read += got;
        parser.finish(&mut self.objects, &mut self.errors);
        Ok(())
    }

    /// Read a file (named on the command line, or a regular file of a directory) and parse it.
    fn read_file(&mut self, path: &Path, meta: &std::fs::Metadata) -> Result<()> {
        if self
            .seen
            .insert(file_id(meta), path.to_path_buf())
            .is_some()
        {
            // The same file under a second name: its objects are in already.
            return Ok(());
        }
        let name = path.display().to_string();
        if meta.is_file() && meta.len() > MAX_INPUT_BYTES.saturating_sub(self.read) as u64 {
            bail!("{}", too_large(&name, self.read));
        }
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                self.skip(path, format!("cannot read the file: {e}; it is skipped"));
                return Ok(());
            }
        };
        match self.read_stream(&name, &name, file) {
            Ok(()) => Ok(()),
            Err(e) if e.downcast_ref::<std::io::Error>().is_some() => {
                self.skip(path, format!("{e:#}; the file is skipped"));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Read the manifests of a directory tree, each directory and file once.
    fn walk(&mut self, dir: &Path, meta: &std::fs::Metadata) -> Result<()> {
        if let Some(first) = self.seen.get(&file_id(meta)) {
            eprintln!(
                "note: {} is the directory {} again (a symbolic link); it is read once",
                dir.display(),
                first.display()
            );
            return Ok(());
        }
        self.seen.insert(file_id(meta), dir.to_path_buf());
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => {
                self.skip(
                    dir,
                    format!("cannot list the directory: {e}; it is skipped"),
                );
                return Ok(());
            }
        };
        entries.sort();
        for entry in entries {
            let is_manifest = entry
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
            // Kustomize files describe a build, not objects: render those with -k.
            let is_kustomization = entry.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                matches!(
                    n,
                    "kustomization.yaml" | "kustomization.yml" | "Kustomization"
                )
            });
            let wanted = is_manifest && !is_kustomization;
            let meta = match std::fs::metadata(&entry) {
                Ok(m) => m,
                // A dangling or looping symbolic link: only a manifest's name says it mattered.
                Err(e) if wanted => {
                    self.skip(&entry, format!("cannot read the file: {e}; it is skipped"));
                    continue;
                }
                Err(_) => continue,
            };
            if meta.is_dir() {
                self.walk(&entry, &meta)?;
            } else if !wanted {
                continue;
            } else if meta.is_file() {
                self.read_file(&entry, &meta)?;
            } else {
                let what = special_kind(&meta.file_type());
                self.skip(
                    &entry,
                    format!(
                        "skipped: {what}, not a regular file (in a directory, kfp-mesh reads regular files only, as reading {what} may block or never end); name it with -f to read it"
                    ),
                );
            }
        }
        Ok(())
    }

    /// Render a kustomization with `kubectl kustomize`, reading its output as it comes, up to
    /// the cap.
    fn kustomize(&mut self, dir: &Path) -> Result<()> {
        let mut child = Command::new("kubectl")
            .arg("kustomize")
            // The directory is an argument, never a flag, whatever it starts with.
            .arg("--")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    crate::environment(format!(
                        "`-k {}` needs kubectl on the PATH (kubectl kustomize renders the directory); install kubectl, or render it yourself and pass `-f -`",
                        dir.display()
                    ))
                } else {
                    anyhow!("cannot run kubectl kustomize {}: {e}", dir.display())
                }
            })?;
        // kubectl's messages: the first 64 KiB are kept, the rest drained so it never blocks.
        let stderr = child.stderr.take().map(|err| {
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                let mut err = err;
                let _ = err.by_ref().take(64 * 1024).read_to_end(&mut kept);
                let _ = std::io::copy(&mut err, &mut std::io::sink());
                kept
            })
        });
        let name = format!("kubectl kustomize {}", dir.display());
        let (objects_before, errors_before) = (self.objects.len(), self.errors.len());
        let source = format!("kustomize:{}", dir.display());
        let output = match child.stdout.take() {
            Some(out) => self.read_stream(&source, &name, out),
            None => Err(anyhow!("cannot read the output of {name}")),
        };
        if output.is_err() {
            // Stop kubectl (this run's own child) instead of waiting for an output without end.
            let _ = child.kill();
        }
        let status = child
            .wait()
            .with_context(|| format!("waiting for {name}"))?;
        let stderr = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
        output?;
        if !status.success() {
            self.objects.truncate(objects_before);
            self.errors.truncate(errors_before);
            bail!(
                "kubectl kustomize {} failed: {}",
                dir.display(),
                String::from_utf8_lossy(&stderr).trim()
            );
        }
        Ok(())
    }
}

/// Device and inode: the identity of a file whatever name it is reached by.
fn file_id(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

fn special_kind(t: &std::fs::FileType) -> &'static str {
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "a special file"
    }
}

fn too_large(name: &str, read_before: usize) -> String {
    let all = if read_before == 0 {
        String::new()
    } else {
        format!(
            " (with the {} MiB read before it)",
            read_before.div_ceil(1024 * 1024)
        )
    };
    format!(
        "{name}: more than 512 MiB of input{all}, the most kfp-mesh reads in one run; reading stopped there. Check a part at a time (e.g. one namespace, or fewer files)"
    )
}

/// Print input errors to stderr, one line each.
pub fn report_input_errors(errors: &[InputError]) {
    for e in errors {
        eprintln!("error: {e}");
    }
}

/// Warn about Istio objects validation rejects: they take no effect on any verdict.
pub fn report_rejected(inventory: &kfp_mesh_core::inventory::Inventory) {
    for r in &inventory.rejected {
        for i in &r.issues {
            eprintln!(
                "warning: {} takes no effect: Istio rejects it ({}): {}",
                r.object, i.code, i.message
            );
        }
    }
}
