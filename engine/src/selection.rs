//! The selection syntax of the CLI: `storage_bill`, `+storage_bill`, `storage_bill+`,
//! `1+storage_bill`, `storage_bill+2`, `group:billing`, `tag:team=billing`, `*`, and `,` for union.

use std::collections::BTreeSet;

use crate::graph::{AssetGraph, AssetId, LookupError, suggest};

/// Why a selection could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    /// A name matched no asset.
    #[error(transparent)]
    UnknownAsset(#[from] LookupError),
    /// A term is not in the selection syntax.
    #[error(
        "malformed selection term {term:?}: {reason}; valid forms: NAME, +NAME, NAME+, N+NAME, NAME+N, group:G, tag:K=V, *"
    )]
    Malformed {
        /// The term.
        term: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A group or tag matched no asset.
    #[error("{what} matches no asset{}", if .known.is_empty() { String::new() } else { format!(" (known: {})", .known.join(", ")) })]
    NoMatch {
        /// The term, described.
        what: String,
        /// Close or known values.
        known: Vec<String>,
    },
}

fn parse_depth(s: &str, term: &str) -> Result<Option<usize>, SelectionError> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse::<usize>().map(Some).map_err(|_| SelectionError::Malformed {
        term: term.to_owned(),
        reason: format!("{s:?} is not a depth (a whole number)"),
    })
}

/// Resolves a selection against the graph into a set of assets.
pub fn resolve(graph: &AssetGraph, selection: &str) -> Result<BTreeSet<AssetId>, SelectionError> {
    let mut out = BTreeSet::new();
    for term in selection.split(',').map(str::trim) {
        if term.is_empty() {
            return Err(SelectionError::Malformed { term: selection.to_owned(), reason: "empty term".to_owned() });
        }
        if term == "*" {
            out.extend(graph.ids());
            continue;
        }
        if let Some(group) = term.strip_prefix("group:") {
            let ids: Vec<AssetId> = graph.ids().filter(|id| graph.asset(*id).group == group).collect();
            if ids.is_empty() {
                let groups: BTreeSet<&str> = graph.assets().iter().map(|a| a.group.as_str()).collect();
                return Err(SelectionError::NoMatch {
                    what: format!("group {group:?}"),
                    known: groups.into_iter().map(str::to_owned).collect(),
                });
            }
            out.extend(ids);
            continue;
        }
        if let Some(tag) = term.strip_prefix("tag:") {
            let (k, v) = match tag.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (tag, None),
            };
            let ids: Vec<AssetId> = graph
                .ids()
                .filter(|id| graph.asset(*id).tags.get(k).is_some_and(|value| v.is_none_or(|v| v == value)))
                .collect();
            if ids.is_empty() {
                let tags: BTreeSet<String> =
                    graph.assets().iter().flat_map(|a| a.tags.iter().map(|(k, v)| format!("{k}={v}"))).collect();
                return Err(SelectionError::NoMatch {
                    what: format!("tag {tag:?}"),
                    known: tags.into_iter().collect(),
                });
            }
            out.extend(ids);
            continue;
        }
        let (up, rest) = match term.find(|c: char| c.is_ascii_lowercase()) {
            Some(i) => term.split_at(i),
            None => {
                return Err(SelectionError::Malformed { term: term.to_owned(), reason: "no asset name".to_owned() });
            }
        };
        let (name, down) = match rest.find('+') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let upstream = match up {
            "" => None,
            _ => match up.strip_suffix('+') {
                Some(depth) => Some(parse_depth(depth, term)?),
                None => {
                    return Err(SelectionError::Malformed {
                        term: term.to_owned(),
                        reason: "a prefix must end in '+'".to_owned(),
                    });
                }
            },
        };
        let downstream = match down.strip_prefix('+') {
            Some(depth) => Some(parse_depth(depth, term)?),
            None => None,
        };
        let id = graph.lookup(name)?;
        let root = BTreeSet::from([id]);
        out.insert(id);
        if let Some(depth) = upstream {
            out.extend(graph.upstream_closure(&root, depth));
        }
        if let Some(depth) = downstream {
            out.extend(graph.downstream_closure(&root, depth));
        }
    }
    Ok(out)
}

/// Close names for an unknown asset, for callers outside a selection.
pub fn suggestions(graph: &AssetGraph, name: &str) -> Vec<String> {
    suggest(name, graph.assets().iter().map(|a| a.key.as_str()))
}
