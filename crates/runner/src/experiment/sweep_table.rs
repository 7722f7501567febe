//! The `[sweep]` table: the axes' arrays, `[sweep.only_for]` and `[[sweep.also]]`.
//!
//! `[[sweep.also]]` adds points that the main product cannot express without multiplying
//! everything else: each entry is the main sweep with some strategy axes replaced, e.g. q4_0 at
//! 4 bits only, or a head conversion at f32 only, beside a main sweep of bits × axes × rotation.
//!
//! ```toml
//! [[sweep.also]]          # the main sweep's models, contexts, ... with these strategy axes
//! strategy = ["static"]
//! bits = [4]
//! scheme = ["q4_0"]
//! ```
//!
//! Only the strategy kind and strategy parameters may be replaced: the models, contexts and
//! batches (which size the runs, the corpus checks and the report's groups) stay the main sweep's.

use kvlab_strategies::StrategyKind;

use crate::sweep::{self, AXES, Axis, AxisValues, Role, Value};

/// One table's parsed arrays and `only_for`, before defaults fill the other axes.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub swept: Vec<(&'static str, Vec<Value>)>,
    pub only_for: Vec<(&'static str, Vec<StrategyKind>)>,
    /// `[[sweep.also]]` entries (the main table's only).
    pub also: Vec<Parsed>,
}

/// Parses `[sweep]` (named `sweep` in messages).
pub(crate) fn parse_sweep(table: &toml::Table, err: &mut impl FnMut(String)) -> Parsed {
    let mut parsed = parse_table(table, "sweep", &|_| true, err);
    match table.get("also") {
        None => {}
        Some(toml::Value::Array(entries)) => {
            for (i, entry) in entries.iter().enumerate() {
                let name = format!("sweep.also[{i}]");
                let Some(entry) = entry.as_table() else {
                    err(format!("{name} = {entry}: expected a table of strategy axes"));
                    continue;
                };
                let replaceable = |a: &Axis| matches!(a.role, Role::Kind | Role::Strategy);
                let p = parse_table(entry, &name, &replaceable, err);
                if p.swept.is_empty() {
                    err(format!("{name}: replaces no axis (it would repeat the main sweep)"));
                }
                parsed.also.push(p);
            }
        }
        Some(v) => err(format!("sweep.also = {v}: expected [[sweep.also]] tables")),
    }
    parsed
}

/// The axis values of each `[[sweep.also]]` entry: `main`'s, with the entry's arrays and
/// `only_for` keys replacing the main ones.
pub(crate) fn also_axes(main: &AxisValues, entries: &[Parsed]) -> Vec<AxisValues> {
    entries
        .iter()
        .map(|entry| {
            let mut axes = main.clone();
            for (key, values) in &entry.swept {
                match axes.values.iter_mut().find(|(k, _)| k == key) {
                    Some(slot) => slot.1 = values.clone(),
                    // Keep AXES order (the expansion reads values by key, the order is cosmetic).
                    None => axes.values.push((key, values.clone())),
                }
                // A replaced axis is swept as given (its main restriction no longer applies).
                axes.only_for.retain(|(k, _)| k != key);
            }
            for (key, kinds) in &entry.only_for {
                axes.only_for.retain(|(k, _)| k != key);
                axes.only_for.push((key, kinds.clone()));
            }
            axes
        })
        .collect()
}

/// One table's arrays (`name.key = [...]`) and `name.only_for`; keys `allowed` rejects are
/// named in an error.
fn parse_table(
    table: &toml::Table,
    name: &str,
    allowed: &dyn Fn(&Axis) -> bool,
    err: &mut impl FnMut(String),
) -> Parsed {
    let mut parsed = Parsed::default();
    for (key, v) in table {
        match key.as_str() {
            "only_for" => {
                parsed.only_for = parse_only_for(v, name, err);
                continue;
            }
            "also" if name == "sweep" => continue,
            _ => {}
        }
        let Some(axis) = sweep::axis_named(key).filter(|a| allowed(a)) else {
            let keys: Vec<&str> = AXES.iter().filter(|a| allowed(a)).map(|a| a.key).collect();
            let extra = if name == "sweep" { ", only_for, also" } else { ", only_for" };
            err(format!("{name}.{key}: unknown key (allowed: {}{extra})", keys.join(", ")));
            continue;
        };
        let items: Vec<toml::Value> = match v {
            toml::Value::Array(a) => a.clone(),
            scalar => vec![scalar.clone()],
        };
        if items.is_empty() {
            err(format!("{name}.{key} = []: expected at least one value"));
            continue;
        }
        let mut values: Vec<Value> = vec![];
        for (i, item) in items.iter().enumerate() {
            match axis.kind.parse(item) {
                Ok(value) => {
                    if let Some(j) = values.iter().position(|p| *p == value) {
                        err(format!("{name}.{key}[{i}] = {item}: duplicate of {name}.{key}[{j}]"));
                    }
                    values.push(value);
                }
                Err(why) => err(format!("{name}.{key}[{i}] = {item}: {why}")),
            }
        }
        parsed.swept.push((axis.key, values));
    }
    parsed
}

/// `only_for`: `parameter = ["kind", ...]`, a strategy parameter swept only for those kinds.
fn parse_only_for(
    v: &toml::Value,
    name: &str,
    err: &mut impl FnMut(String),
) -> Vec<(&'static str, Vec<StrategyKind>)> {
    let Some(table) = v.as_table() else {
        err(format!("{name}.only_for = {v}: expected a table of parameter = [strategy kinds]"));
        return vec![];
    };
    let mut out = vec![];
    for (key, kinds) in table {
        let Some(axis) = sweep::axis_named(key).filter(|a| a.role == Role::Strategy) else {
            err(format!("{name}.only_for.{key}: not a strategy parameter"));
            continue;
        };
        let items = kinds.as_array().cloned().unwrap_or_else(|| vec![kinds.clone()]);
        let mut parsed = vec![];
        for (i, item) in items.iter().enumerate() {
            match item.as_str().map(str::parse::<StrategyKind>) {
                Some(Ok(kind)) => parsed.push(kind),
                _ => err(format!(
                    "{name}.only_for.{key}[{i}] = {item}: expected a strategy kind ({})",
                    StrategyKind::all().map(|k| k.name()).collect::<Vec<_>>().join(", ")
                )),
            }
        }
        out.push((axis.key, parsed));
    }
    out
}
