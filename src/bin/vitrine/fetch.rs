//! `vitrine fetch`: Hub models into the Hugging Face cache (`hub.rs`),
//! and, with `--out`, into a static site's own folder and model list.

use std::path::{Path, PathBuf};

use vitrine::checkpoint::hf_cache::HubRef;

use crate::hub::{WEIGHTS, hub_from_env};

/// `vitrine fetch ORG/NAME[@REV]... [--out DIR [--manifest FILE]]`:
/// download into the cache and print each model's folder; with `--out`,
/// copy the model's files into DIR too (a static site's own copy), and
/// with `--manifest`, list it in that site manifest.
pub fn fetch(raw: &[String]) -> Result<std::process::ExitCode, String> {
    let args = crate::Args::parse(raw, &[], &["out", "manifest"])?;
    if args.positional.is_empty() {
        return Err("fetch needs a model: vitrine fetch ORG/NAME[@REVISION]".into());
    }
    let out = args.value("out").map(PathBuf::from);
    if out.is_some() && args.positional.len() > 1 {
        return Err("--out takes one model at a time".into());
    }
    if args.value("manifest").is_some() && out.is_none() {
        return Err("--manifest lists the copy --out makes: give --out too".into());
    }
    let hub = hub_from_env();
    for arg in &args.positional {
        // `org/name` alone is taken too, as `hf download` takes it.
        let named = if arg.starts_with("hf:") {
            arg.clone()
        } else {
            format!("hf:{arg}")
        };
        let model = HubRef::parse(&named).expect("an hf: name")?;
        let dir = hub.snapshot(&model)?;
        match &out {
            None => println!("{}", dir.display()),
            Some(out) => {
                let files = copy_model(&dir, out)?;
                if let Some(manifest) = args.value("manifest") {
                    list_in_manifest(Path::new(manifest), out, &model, &dir, &files)?;
                }
                println!("{}", out.display());
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The model's files (links followed) from its snapshot into `out`.
fn copy_model(snapshot: &Path, out: &Path) -> Result<Vec<String>, String> {
    let wanted = ["config.json", "preprocessor_config.json"]
        .into_iter()
        .chain(WEIGHTS);
    std::fs::create_dir_all(out).map_err(|e| format!("cannot make {}: {e}", out.display()))?;
    let mut files = Vec::new();
    let mut weights = false;
    for name in wanted {
        let from = snapshot.join(name);
        let is_weights = WEIGHTS.contains(&name);
        if !from.is_file() || (is_weights && weights) {
            continue;
        }
        weights |= is_weights;
        std::fs::copy(&from, out.join(name))
            .map_err(|e| format!("cannot copy {name} to {}: {e}", out.display()))?;
        files.push(name.to_string());
    }
    Ok(files)
}

/// Adds (or replaces) `model`'s entry in a site manifest
/// (`www/models/manifest.json`'s format), its path relative to the
/// manifest's folder.
fn list_in_manifest(
    manifest: &Path,
    out: &Path,
    model: &HubRef,
    snapshot: &Path,
    files: &[String],
) -> Result<(), String> {
    let text = std::fs::read_to_string(manifest)
        .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
    let mut json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a site manifest: {e}", manifest.display()))?;
    let base = manifest.parent().unwrap_or(Path::new("."));
    let absolute = |p: &Path| std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()));
    let path = absolute(out)?
        .strip_prefix(absolute(base)?)
        .map_err(|_| {
            format!(
                "--out {} is not under the manifest's folder {}: the site could not reach it",
                out.display(),
                base.display()
            )
        })?
        .to_string_lossy()
        .replace('\\', "/");
    let commit = snapshot
        .file_name()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default();
    let entry = serde_json::json!({
        "name": model.repo,
        "path": format!("{path}/"),
        "files": files,
        "description": format!("{}@{} from the Hugging Face Hub, served by this site", model.repo, &commit[..commit.len().min(12)]),
    });
    let models = json
        .get_mut("models")
        .and_then(serde_json::Value::as_array_mut)
        .ok_or_else(|| format!("{} has no \"models\" list", manifest.display()))?;
    models.retain(|m| m.get("name").and_then(serde_json::Value::as_str) != Some(&model.repo));
    models.push(entry);
    let text = serde_json::to_string_pretty(&json).expect("JSON");
    std::fs::write(manifest, text + "\n")
        .map_err(|e| format!("cannot write {}: {e}", manifest.display()))
}
