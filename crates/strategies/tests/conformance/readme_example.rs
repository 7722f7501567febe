//! The README's "Add your own strategy" shows `evict/random.rs` whole: this keeps the two equal,
//! so the worked example a reader copies is the file CI compiles and the conformance suite runs.

use std::path::Path;

#[test]
fn the_readme_shows_the_random_policy_as_it_is() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("../../README.md")).unwrap();
    let file = std::fs::read_to_string(root.join("src/evict/random.rs")).unwrap();
    let section = readme
        .split("\n## Add your own strategy\n")
        .nth(1)
        .expect("the README has an 'Add your own strategy' section");
    let block = section
        .split("```rust\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```\n").next())
        .expect("the section has a rust block");
    assert_eq!(format!("{block}\n"), file, "README block and src/evict/random.rs differ");
    assert!(file.lines().count() < 80, "the worked example stays under 80 lines");
}
