//! The tree's layers, checked: a dependency view of the crate (which top-level module names
//! which through `crate::`), with no circle and no floor reaching up.
//!
//! Floors, bottom to top (a module may use its own floor and the ones below):
//! 0. `sys`, `retry`, `clock`, `url`, `http1`, `console`, `cmdline` — facilities, the settings parser
//! 1. `pid1` — what only PID 1 does
//! 2. `net` — the network stage and its typed result
//! 3. `fetch`, then `register` — the stages that need the network
//! 4. `state` — the hand-over, holding every stage's result; `config` — the resolved settings
//! 5. `boot`, `keep` — the drivers on top
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn floor(module: &str) -> Option<u32> {
    Some(match module {
        "sys" | "retry" | "clock" | "clock_trust" | "tempfile" | "hostsafety" | "url" | "http1"
        | "console" | "cmdline" => 0,
        "pid1" => 1,
        "net" => 2,
        "fetch" => 3,
        "register" => 4,
        "state" | "config" => 5,
        "boot" | "keep" => 6,
        _ => return None,
    })
}

/// `crate::X` names in code (comments and test modules left out), by top-level module.
fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .to_string();
            let top = rel
                .split('/')
                .next()
                .unwrap()
                .trim_end_matches(".rs")
                .to_string();
            if top == "main" || top == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            for line in code.lines() {
                let line = line.split("//").next().unwrap();
                let mut rest = line;
                while let Some(i) = rest.find("crate::") {
                    rest = &rest[i + "crate::".len()..];
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != top {
                        out.entry(top.clone()).or_default().insert(name);
                    }
                }
            }
        }
    }
    out
}

#[test]
fn every_module_sits_on_a_floor_and_uses_only_its_own_and_lower_floors() {
    let edges = edges();
    assert!(
        edges.contains_key("net") && edges.contains_key("boot"),
        "the scan found nothing: {edges:?}"
    );
    let mut wrong = Vec::new();
    for (from, tos) in &edges {
        let Some(f) = floor(from) else {
            wrong.push(format!("{from} is on no floor: add it to tests/layers.rs"));
            continue;
        };
        for to in tos {
            match floor(to) {
                None => wrong.push(format!("{from} -> {to}: {to} is on no floor")),
                Some(t) if t > f => wrong.push(format!(
                    "{from} (floor {f}) uses {to} (floor {t}): a floor reaching up"
                )),
                Some(_) => {}
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_module_graph_has_no_circle() {
    let edges = edges();
    // Depth-first search for a back edge.
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut circle = path[i..].to_vec();
            circle.push(n.to_string());
            return Some(circle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in edges.keys() {
        if let Some(c) = visit(n, &edges, &mut Vec::new(), &mut done) {
            panic!("import circle: {}", c.join(" -> "));
        }
    }
}
