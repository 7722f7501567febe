#!/usr/bin/env python3
"""Tests for house-check.py on crafted crates: what it must catch and what it must let pass."""

import importlib.util
import tempfile
import textwrap
import unittest
from pathlib import Path

SPEC = importlib.util.spec_from_file_location(
    "house_check", Path(__file__).resolve().parent / "house-check.py"
)
house_check = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(house_check)


def check(files):
    """Writes `files` (path -> text) under crates/demo/ of a fresh repo and checks it."""
    with tempfile.TemporaryDirectory() as repo:
        crate = Path(repo) / "crates" / "demo"
        (crate / "Cargo.toml").parent.mkdir(parents=True)
        (crate / "Cargo.toml").write_text("[package]\nname = \"demo\"\n")
        for path, text in files.items():
            (crate / path).parent.mkdir(parents=True, exist_ok=True)
            (crate / path).write_text(textwrap.dedent(text))
        return house_check.check(repo)


class HouseCheck(unittest.TestCase):
    def test_a_two_file_circle_is_caught(self):
        out = check(
            {
                "src/lib.rs": "mod a;\nmod b;\n",
                "src/a.rs": "use crate::b::Bee;\npub struct Ay(Bee);\n",
                "src/b.rs": "pub struct Bee;\npub fn f() -> crate::a::Ay { todo!() }\n",
            }
        )
        self.assertEqual(len(out), 1, out)
        self.assertIn("import circle among crates/demo/src/a.rs, crates/demo/src/b.rs", out[0])

    def test_a_circle_through_a_reexport_and_a_child_path_is_caught(self):
        out = check(
            {
                "src/lib.rs": "mod shape;\npub use shape::Shape;\n",
                "src/shape/mod.rs": "mod side;\npub struct Shape;\nfn n() { side::count(); }\n",
                "src/shape/side.rs": "use crate::Shape;\npub fn count() -> Shape { Shape }\n",
            }
        )
        self.assertEqual(len(out), 1, out)
        self.assertIn("shape/mod.rs, crates/demo/src/shape/side.rs", out[0])

    def test_test_modules_comments_and_strings_make_no_edges(self):
        out = check(
            {
                "src/lib.rs": "mod a;\nmod b;\n",
                "src/a.rs": "use crate::b::Bee;\npub struct Ay(Bee);\n",
                "src/b.rs": """\
                    // crate::a::Ay
                    pub struct Bee;
                    const S: &str = "crate::a::Ay";
                    #[cfg(test)]
                    mod tests {
                        use crate::a::Ay;
                    }
                """,
            }
        )
        self.assertEqual(out, [])

    def test_an_error_type_from_the_top_file_is_caught_and_from_a_leaf_is_not(self):
        files = {
            "src/lib.rs": "mod leaf;\n#[derive(Debug)]\npub struct DemoError;\n",
            "src/leaf.rs": "use crate::DemoError;\npub fn f() -> Result<(), DemoError> { Ok(()) }\n",
        }
        out = check(files)
        self.assertEqual(len(out), 1, out)
        self.assertIn("leaf.rs:1: imports error type DemoError from crates/demo/src/lib.rs", out[0])
        files["src/lib.rs"] = "mod error;\nmod leaf;\npub use error::DemoError;\n"
        files["src/error.rs"] = "#[derive(Debug)]\npub struct DemoError;\n"
        self.assertEqual(check(files), [])

    def test_sizes_count_code_not_comments_blanks_or_tests(self):
        body = "    let x = 1;\n    // why\n\n" * 118  # plus the signature and the closing brace: 120
        ok = f"pub fn f() {{\n{body}}}\n"
        self.assertEqual(check({"src/lib.rs": ok}), [])
        long = f"pub fn f() {{\n{body}    let y = 2;\n}}\n"
        self.assertIn("fn f has 121 lines of code", check({"src/lib.rs": long})[0])
        many = "pub struct S;\n" * 400 + "#[cfg(test)]\nmod tests {\n" + "fn t() {}\n" * 50 + "}\n"
        self.assertEqual(check({"src/lib.rs": many}), [])
        self.assertIn("401 lines of code", check({"src/lib.rs": "pub struct S;\n" * 401})[0])


if __name__ == "__main__":
    unittest.main()
