//! Multi-dimensional partitions: the product of N one-dimensional definitions.
//!
//! A key names every dimension, `name=value`, joined by `|`, in dimension-name order:
//! `month=2025-12|realm=123`. Input may name the dimensions in any order; output is always
//! canonical. At most one dimension is a time window: it is "the time dimension" that ranges,
//! lateness and step order follow. Every operation is O(result): the product is never
//! materialized except when the caller asks for the keys.

use super::{PartitionKeyError, PartitionsContext, PartitionsDef, TimeWindow, TimeWindowPartitions};

/// Separates dimensions in a key.
pub const DIMENSION_SEPARATOR: char = '|';

/// The value of dimension `name` in a canonical multi-dimensional key: `Some("123")` for
/// `realm` in `month=2025-12|realm=123`.
pub fn dimension_value<'k>(key: &'k str, name: &str) -> Option<&'k str> {
    key.split(DIMENSION_SEPARATOR).find_map(|part| part.split_once('=').and_then(|(n, v)| (n == name).then_some(v)))
}

/// One dimension of a [`MultiPartitions`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dimension {
    /// Its name: lowercase letters, digits and `_`, starting with a letter.
    pub name: String,
    /// Its partitions: a time window, a static set or a dynamic set (never another product).
    pub def: PartitionsDef,
}

/// The product of N dimensions, kept in name order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MultiPartitions {
    dims: Vec<Dimension>,
}

/// Why a multi-dimensional definition is not valid.
fn definition_error(dims: &[(String, PartitionsDef)]) -> Option<String> {
    if dims.is_empty() {
        return Some("a multi-dimensional definition needs at least one dimension".to_owned());
    }
    let mut names: Vec<&str> = dims.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Some(format!("dimension {:?} is declared twice", w[0]));
    }
    for (name, def) in dims {
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Some(format!(
                "dimension name {name:?} is not valid: lowercase letters, digits and '_', starting with a letter"
            ));
        }
        match def {
            PartitionsDef::Multi(_) => return Some(format!("dimension {name:?} is itself multi-dimensional")),
            PartitionsDef::Static(keys) => {
                if let Some(bad) = keys.iter().find(|k| k.is_empty() || k.contains(DIMENSION_SEPARATOR)) {
                    return Some(format!(
                        "dimension {name:?} has the key {bad:?}: keys of a dimension are non-empty and have no '|'"
                    ));
                }
            }
            _ => {}
        }
    }
    let time = dims.iter().filter(|(_, d)| matches!(d, PartitionsDef::TimeWindow(_))).count();
    if time > 1 {
        return Some(format!("{time} time-window dimensions: at most one dimension is a time window"));
    }
    None
}

impl MultiPartitions {
    /// The product of `dims`.
    ///
    /// # Panics
    /// On no dimension, a duplicate or invalid name, a nested product, more than one time-window
    /// dimension, or a static key with `|`: definitions are code, and the definitions test
    /// catches it.
    pub fn new(dims: Vec<(String, PartitionsDef)>) -> MultiPartitions {
        if let Some(err) = definition_error(&dims) {
            panic!("{err}");
        }
        let mut dims: Vec<Dimension> = dims.into_iter().map(|(name, def)| Dimension { name, def }).collect();
        dims.sort_by(|a, b| a.name.cmp(&b.name));
        MultiPartitions { dims }
    }

    /// The dimensions, in name order.
    pub fn dimensions(&self) -> &[Dimension] {
        &self.dims
    }

    /// The dimension called `name`, with its position.
    pub fn dimension(&self, name: &str) -> Option<(usize, &Dimension)> {
        self.dims.iter().enumerate().find(|(_, d)| d.name == name)
    }

    /// The time-window dimension, with its position, if there is one.
    pub fn time_dimension(&self) -> Option<(usize, &TimeWindowPartitions)> {
        self.dims.iter().enumerate().find_map(|(i, d)| d.def.as_time_window().map(|tw| (i, tw)))
    }

    pub(super) fn describe(&self) -> String {
        let dims: Vec<String> = self.dims.iter().map(|d| format!("{}: {}", d.name, d.def.describe())).collect();
        format!("multi [{}]", dims.join(" × "))
    }

    fn format_hint(&self) -> String {
        let dims: Vec<String> = self.dims.iter().map(|d| format!("{}=KEY", d.name)).collect();
        format!("{} (every dimension once, in any order, separated by '|'; --dim NAME=KEY adds one)", dims.join("|"))
    }

    fn malformed(&self, key: &str) -> PartitionKeyError {
        PartitionKeyError::Malformed { key: key.to_owned(), def: self.describe(), expected: self.format_hint() }
    }

    /// The canonical key of one value per dimension (in dimension order).
    pub fn join<S: AsRef<str>>(&self, values: &[S]) -> String {
        debug_assert_eq!(values.len(), self.dims.len());
        let mut key = String::new();
        for (d, v) in self.dims.iter().zip(values) {
            if !key.is_empty() {
                key.push(DIMENSION_SEPARATOR);
            }
            key.push_str(&d.name);
            key.push('=');
            key.push_str(v.as_ref());
        }
        key
    }

    /// Splits a key into `name=value` parts, by dimension position; dimensions not named are
    /// `None`. A part without `=` is the time dimension's value (`2025-12|realm=123`). Unknown
    /// and repeated dimensions are refused.
    fn parts<'k>(&self, key: &'k str) -> Result<Vec<Option<&'k str>>, PartitionKeyError> {
        let mut values = vec![None; self.dims.len()];
        let time = self.time_dimension().map(|(i, _)| self.dims[i].name.as_str());
        for part in key.split(DIMENSION_SEPARATOR) {
            let (name, value) = match (part.split_once('='), time) {
                (Some(nv), _) => nv,
                (None, Some(time)) => (time, part),
                (None, None) => return Err(self.malformed(key)),
            };
            let (i, _) = self.dimension(name.trim()).ok_or_else(|| PartitionKeyError::Malformed {
                key: key.to_owned(),
                def: self.describe(),
                expected: format!(
                    "dimensions {} ({:?} is not one of them)",
                    self.dims.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", "),
                    name
                ),
            })?;
            if values[i].replace(value).is_some() {
                return Err(PartitionKeyError::Malformed {
                    key: key.to_owned(),
                    def: self.describe(),
                    expected: format!("dimension {name:?} once"),
                });
            }
        }
        Ok(values)
    }

    /// The value of every dimension of a key, in dimension order, without checking that the
    /// values exist. Refuses keys that do not name every dimension exactly once.
    pub fn split<'k>(&self, key: &'k str) -> Result<Vec<&'k str>, PartitionKeyError> {
        self.parts(key)?.into_iter().collect::<Option<Vec<_>>>().ok_or_else(|| self.malformed(key))
    }

    fn in_dimension(&self, i: usize, err: PartitionKeyError) -> PartitionKeyError {
        PartitionKeyError::Dimension { dimension: self.dims[i].name.clone(), source: Box::new(err) }
    }

    /// Checks every value of a key and returns it in canonical form.
    pub fn resolve(&self, key: &str, ctx: &PartitionsContext) -> Result<String, PartitionKeyError> {
        let values = self.split(key)?;
        let mut canonical = Vec::with_capacity(values.len());
        for (i, (d, v)) in self.dims.iter().zip(values).enumerate() {
            canonical.push(d.def.resolve(v, ctx).map_err(|e| self.in_dimension(i, e))?);
        }
        Ok(self.join(&canonical))
    }

    /// Every key that exists in `ctx`: the product of the dimensions' keys, the last dimension
    /// varying fastest.
    pub fn keys(&self, ctx: &PartitionsContext) -> Vec<String> {
        let per_dim: Vec<Vec<String>> = self.dims.iter().map(|d| d.def.keys(ctx)).collect();
        self.product(&per_dim)
    }

    /// The keys of the product of one value set per dimension (in dimension order).
    pub fn product(&self, per_dim: &[Vec<String>]) -> Vec<String> {
        if per_dim.iter().any(Vec::is_empty) {
            return Vec::new();
        }
        let total: usize = per_dim.iter().map(Vec::len).product();
        let mut out = Vec::with_capacity(total);
        let mut idx = vec![0usize; per_dim.len()];
        loop {
            let values: Vec<&str> = idx.iter().zip(per_dim).map(|(&i, vals)| vals[i].as_str()).collect();
            out.push(self.join(&values));
            // Odometer: the last dimension turns fastest.
            let mut d = per_dim.len();
            loop {
                if d == 0 {
                    return out;
                }
                d -= 1;
                idx[d] += 1;
                if idx[d] < per_dim[d].len() {
                    break;
                }
                idx[d] = 0;
            }
        }
    }

    /// How many partitions exist in `ctx`.
    pub fn len(&self, ctx: &PartitionsContext) -> usize {
        self.dims.iter().map(|d| d.def.len(ctx)).product()
    }

    /// The keys from `from` to `to`, both included.
    ///
    /// Each end is a partial key: the dimensions it names are fixed (the same on both ends), the
    /// time dimension runs from one end's value to the other's, and dimensions named on neither
    /// end take every key. A part without `=` is the time dimension's:
    /// `--from 2025-01 --to 2025-12` is every realm's months, `--from 'month=2025-01|realm=123'
    /// --to 'month=2025-12|realm=123'` one realm's.
    pub fn range(&self, from: &str, to: &str, ctx: &PartitionsContext) -> Result<Vec<String>, PartitionKeyError> {
        let time = self.time_dimension().map(|(i, _)| i);
        let partial = |key: &str| -> Result<Vec<Option<String>>, PartitionKeyError> {
            Ok(self.parts(key)?.into_iter().map(|v| v.map(str::to_owned)).collect())
        };
        let (a, b) = (partial(from)?, partial(to)?);
        let mut per_dim = Vec::with_capacity(self.dims.len());
        for (i, d) in self.dims.iter().enumerate() {
            let values = match (&a[i], &b[i]) {
                (Some(x), Some(y)) if Some(i) == time => d.def.range(x, y, ctx),
                (Some(x), Some(y)) if x == y => d.def.resolve(x, ctx).map(|k| vec![k]),
                (Some(x), Some(y)) => {
                    return Err(PartitionKeyError::Malformed {
                        key: format!("{from} .. {to}"),
                        def: self.describe(),
                        expected: format!(
                            "the same {} on both ends ({x:?} and {y:?}); a range runs over the time dimension only",
                            d.name
                        ),
                    });
                }
                (None, None) => Ok(d.def.keys(ctx)),
                _ => {
                    return Err(PartitionKeyError::Malformed {
                        key: format!("{from} .. {to}"),
                        def: self.describe(),
                        expected: format!("{} on both ends or on neither", d.name),
                    });
                }
            };
            per_dim.push(values.map_err(|e| self.in_dimension(i, e))?);
        }
        Ok(self.product(&per_dim))
    }

    /// The window of a key's time dimension.
    pub fn window_of(&self, key: &str) -> Option<TimeWindow> {
        let (i, tw) = self.time_dimension()?;
        let values = self.split(key).ok()?;
        tw.parse_index(values[i]).ok().map(|idx| tw.window(idx))
    }

    /// The position of a key on the time dimension (0 without one): the order steps run in.
    pub fn order_index(&self, key: &str) -> i64 {
        let Some((i, tw)) = self.time_dimension() else {
            return 0;
        };
        self.split(key).ok().and_then(|v| tw.parse_index(v[i]).ok()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;
