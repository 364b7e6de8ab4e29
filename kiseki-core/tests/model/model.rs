//! Model-based test: random namespace operation sequences applied to the engine and to
//! a naive reference model; every result, errno and the whole tree must agree, and the
//! engine's own consistency check must stay clean.

use crate::common::{apply, fresh, op_strategy, tree, Model, Op};
use proptest::prelude::*;

fn run(url: &str, ops: &[Op]) -> Result<(), TestCaseError> {
    let meta = fresh(url);
    let mut model = Model::default();
    for (i, op) in ops.iter().enumerate() {
        let expected = model.apply(op);
        let got = apply(&meta, op);
        prop_assert_eq!(got, expected, "step {}: {:?}", i, op);
        prop_assert_eq!(tree(&meta), model.tree(), "tree after step {}: {:?}", i, op);
    }
    let report = meta.check().expect("check");
    prop_assert!(report.is_clean(), "fsck: {:?}", report.problems);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn memory_engine_matches_model(ops in prop::collection::vec(op_strategy(), 1..60)) {
        run("memory://", &ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn rocksdb_engine_matches_model(ops in prop::collection::vec(op_strategy(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        run(&format!("rocksdb://{}/meta", dir.path().display()), &ops)?;
    }
}

proptest! {
    // Each case is a fresh volume under its own prefix of one shared 3-member cluster.
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn etcd_engine_matches_model(ops in prop::collection::vec(op_strategy(), 1..60)) {
        if kiseki_testkit::etcd::etcd_available() {
            let cluster = kiseki_testkit::etcd::shared();
            run(&cluster.url(&kiseki_testkit::etcd::unique_prefix("model")), &ops)?;
        }
    }
}

/// Shrunk failures found by the property tests, pinned by name.
mod regressions {
    use super::*;

    fn ops(v: &[Op]) {
        run("memory://", v).unwrap();
    }

    #[test]
    fn rename_dir_over_ancestor_is_enotempty() {
        ops(&[
            Op::Mkdir("a".into()),
            Op::Mkdir("a/b".into()),
            Op::Mkdir("a/b/c".into()),
            Op::Rename("a/b/c".into(), "a".into(), 0),
            Op::Rename("a/b/c".into(), "a".into(), common_exchange()),
            Op::Rename("a".into(), "a/b/c".into(), 0),
        ]);
    }

    #[test]
    fn exchange_file_and_dir_across_parents_moves_link_counts() {
        ops(&[
            Op::Mkdir("a".into()),
            Op::Mkdir("b".into()),
            Op::Mkdir("a/c".into()),
            Op::Create("b/c".into()),
            Op::Rename("a/c".into(), "b/c".into(), common_exchange()),
            Op::Rmdir("b/c".into()),
        ]);
    }

    #[test]
    fn hard_links_survive_renames_and_unlinks() {
        ops(&[
            Op::Create("a".into()),
            Op::Link("a".into(), "b".into()),
            Op::Rename("a".into(), "b".into(), 0),
            Op::Mkdir("c".into()),
            Op::Link("b".into(), "c/a".into()),
            Op::Unlink("b".into()),
            Op::Rename("c/a".into(), "a".into(), 0),
        ]);
    }

    /// From the proptest regression file this replaces (failure persistence is off).
    #[test]
    fn rename_dir_into_a_sibling_creates_the_name() {
        ops(&[
            Op::Mkdir("c".into()),
            Op::Mkdir("b".into()),
            Op::Rename("b".into(), "c/a".into(), 0),
        ]);
    }

    fn common_exchange() -> u32 {
        kiseki_core::meta::RENAME_EXCHANGE
    }
}
