//! Models the Hugging Face cache holds: what timm, transformers,
//! `huggingface_hub` or `vitrine fetch` downloaded, found where Python's
//! `huggingface_hub` keeps it, so that `--model hf:org/name[@revision]`
//! loads it with no network.
//!
//! The layout, as `huggingface_hub` writes it: under the hub cache
//! (`HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, with
//! `HF_HOME` defaulting to `$XDG_CACHE_HOME/huggingface` or
//! `~/.cache/huggingface`), each model in `models--{org}--{name}`, its
//! revisions' commits in `refs/{revision}`, and each commit's files in
//! `snapshots/{commit}/` (links into `blobs/`, made only once a file is
//! whole).

use std::path::{Path, PathBuf};

/// A model of the Hub, as `hf:org/name[@revision]` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubRef {
    pub repo: String,
    pub revision: String,
}

impl HubRef {
    /// `hf:org/name` or `hf:org/name@revision` (a branch, a tag, a full
    /// commit, `refs/pr/N`); `None` for anything without the `hf:` prefix.
    pub fn parse(text: &str) -> Option<Result<Self, String>> {
        let rest = text.strip_prefix("hf:")?;
        let (repo, revision) = rest.split_once('@').unwrap_or((rest, "main"));
        let part_ok = |p: &str| {
            !p.is_empty()
                && p.len() <= 96
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && !p.contains("--")
                && !p.contains("..")
        };
        let ok = matches!(repo.split_once('/'), Some((org, name)) if part_ok(org) && part_ok(name));
        if !ok {
            return Some(Err(format!(
                "`{text}` is not a Hub model: give hf:org/name or hf:org/name@REVISION"
            )));
        }
        if revision.is_empty() || revision.contains("..") || revision.starts_with('/') {
            return Some(Err(format!("`{text}`: `{revision}` is not a revision")));
        }
        Some(Ok(Self {
            repo: repo.to_string(),
            revision: revision.to_string(),
        }))
    }
}

/// The hub cache folder `huggingface_hub` uses, from the environment as it
/// reads it (`var` looks a variable up).
pub fn hub_cache(var: impl Fn(&str) -> Option<String>) -> PathBuf {
    let set = |k: &str| var(k).filter(|v| !v.is_empty());
    if let Some(dir) = set("HF_HUB_CACHE").or_else(|| set("HUGGINGFACE_HUB_CACHE")) {
        return PathBuf::from(dir);
    }
    hf_home(var).join("hub")
}

/// `HF_HOME` as `huggingface_hub` reads it: the variable, else
/// `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface` (where its
/// token file lives, and by default the hub cache).
pub fn hf_home(var: impl Fn(&str) -> Option<String>) -> PathBuf {
    let set = |k: &str| var(k).filter(|v| !v.is_empty());
    set("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
        let cache = set("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(set("HOME").unwrap_or_default()).join(".cache"));
        cache.join("huggingface")
    })
}

/// The folder of `model`'s files in the cache `cache`: its revision's
/// commit (a full commit is its own), then that commit's snapshot. The
/// error says what is missing and how to get it.
pub fn snapshot(cache: &Path, model: &HubRef) -> Result<PathBuf, String> {
    let HubRef { repo, revision } = model;
    let folder = cache.join(format!("models--{}", repo.replace('/', "--")));
    let get = format!(
        "download it first (`vitrine fetch {repo}{}`, or with huggingface_hub, timm or transformers)",
        if revision == "main" {
            String::new()
        } else {
            format!("@{revision}")
        }
    );
    if !folder.is_dir() {
        return Err(format!(
            "{repo} is not in the Hugging Face cache ({}); {get}",
            cache.display()
        ));
    }
    let is_commit = revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit());
    let commit = if is_commit {
        revision.to_ascii_lowercase()
    } else {
        let refs = folder.join("refs").join(revision);
        std::fs::read_to_string(&refs)
            .map(|c| c.trim().to_string())
            .map_err(|_| {
                format!(
                    "{repo}@{revision} is not in the Hugging Face cache (no {}); {get}",
                    refs.display()
                )
            })?
    };
    let dir = folder.join("snapshots").join(&commit);
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(format!(
            "{repo}@{revision} (commit {commit}) has no files in the Hugging Face cache; {get}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_read_and_refused() {
        assert_eq!(HubRef::parse("model.safetensors"), None);
        assert_eq!(
            HubRef::parse("hf:acme/tiny@refs/pr/1"),
            Some(Ok(HubRef {
                repo: "acme/tiny".into(),
                revision: "refs/pr/1".into()
            }))
        );
        assert_eq!(
            HubRef::parse("hf:acme/tiny").unwrap().unwrap().revision,
            "main"
        );
        for bad in [
            "hf:gpt2",
            "hf:a--b/c",
            "hf:acme/",
            "hf:acme/x/y",
            "hf:acme/x@",
            "hf:acme/x@../../etc",
        ] {
            assert!(matches!(HubRef::parse(bad), Some(Err(_))), "{bad}");
        }
    }

    /// The folder `huggingface_hub` reads, from each variable in its order.
    #[test]
    fn the_cache_is_where_huggingface_hub_looks() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            hub_cache(env(&[("HOME", "/h")])),
            PathBuf::from("/h/.cache/huggingface/hub")
        );
        assert_eq!(
            hub_cache(env(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")])),
            PathBuf::from("/x/huggingface/hub")
        );
        assert_eq!(
            hub_cache(env(&[("HOME", "/h"), ("HF_HOME", "/hf")])),
            PathBuf::from("/hf/hub")
        );
        assert_eq!(
            hub_cache(env(&[
                ("HF_HOME", "/hf"),
                ("HUGGINGFACE_HUB_CACHE", "/old")
            ])),
            PathBuf::from("/old")
        );
        assert_eq!(
            hub_cache(env(&[
                ("HF_HUB_CACHE", "/new"),
                ("HUGGINGFACE_HUB_CACHE", "/old")
            ])),
            PathBuf::from("/new")
        );
    }
}
