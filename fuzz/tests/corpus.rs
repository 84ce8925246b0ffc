//! Replays every seed (`corpus/TARGET/`) and every crash kept as a regression
//! (`regressions/TARGET/`) through the target bodies on stable, so the normal test command keeps
//! them honest without libFuzzer. `SKYWIRE_FUZZ_WRITE_SEEDS=1` (re)writes the generated seeds
//! into `corpus/TARGET/seed-N`.

use std::fs;
use std::path::{Path, PathBuf};

use skywire_fuzz::{TARGETS, seeds::seeds};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

#[test]
fn every_target_has_a_binary_and_seeds() {
    for (name, _) in TARGETS {
        let bin = root().join("fuzz_targets").join(format!("{name}.rs"));
        assert!(bin.is_file(), "{} missing", bin.display());
        assert!(!seeds(name).is_empty(), "no generated seeds for {name}");
        assert!(
            !files(&root().join("corpus").join(name)).is_empty(),
            "corpus/{name}/ is empty (SKYWIRE_FUZZ_WRITE_SEEDS=1 cargo test -p skywire-fuzz)"
        );
    }
    let bins = files(&root().join("fuzz_targets")).len();
    assert_eq!(
        bins,
        TARGETS.len(),
        "a fuzz_targets/*.rs that TARGETS does not list"
    );
}

#[test]
fn generated_seeds_pass_and_are_in_the_corpus() {
    let write = std::env::var_os("SKYWIRE_FUZZ_WRITE_SEEDS").is_some();
    for (name, target) in TARGETS {
        let dir = root().join("corpus").join(name);
        for (i, s) in seeds(name).iter().enumerate() {
            target(s);
            let f = dir.join(format!("seed-{i}"));
            if write {
                fs::create_dir_all(&dir).expect("corpus dir");
                fs::write(&f, s).expect("write seed");
            } else {
                let on_disk = fs::read(&f).unwrap_or_default();
                assert!(
                    on_disk == *s,
                    "{} differs from the generated seed (SKYWIRE_FUZZ_WRITE_SEEDS=1 to update)",
                    f.display()
                );
            }
        }
    }
}

#[test]
fn corpus_and_regressions_replay() {
    let mut n = 0;
    for (name, target) in TARGETS {
        for sub in ["corpus", "regressions"] {
            for f in files(&root().join(sub).join(name)) {
                // A fuzzer running in this checkout replaces corpus files as it reduces them.
                let data = match fs::read(&f) {
                    Ok(d) => d,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => panic!("read {}: {e}", f.display()),
                };
                let r = std::panic::catch_unwind(|| target(&data));
                assert!(r.is_ok(), "{} panics {name}", f.display());
                n += 1;
            }
        }
    }
    assert!(n >= TARGETS.len());
}
