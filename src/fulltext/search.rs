//! Queries: tantivy's query syntax over the run documents, with exact
//! filters, results best first with a short highlighted snippet.

use std::ops::Bound;

use tantivy::collector::TopDocs;
use tantivy::query::{
    AllQuery, BooleanQuery, ConstScoreQuery, Occur, Query, QueryParser, QueryParserError,
    RangeQuery, TermQuery,
};
use tantivy::query_grammar::{UserInputAst, UserInputLeaf};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::snippet::SnippetGenerator;
use tantivy::{TantivyDocument, Term};

use super::schema::{inputs_text, run_from_json, stored_text, DEFAULT_FIELDS, KIND_RUN};
use super::{FullText, FullTextError};
use crate::event::json::{json_f64, json_string};
use crate::event::Micros;
use crate::view::Run;

/// Most hits one search returns.
pub const MAX_LIMIT: usize = 10_000;
/// Longest snippet, in characters.
pub const SNIPPET_CHARS: usize = 160;
/// How a snippet marks the words that matched.
pub const HIGHLIGHT: (&str, &str) = ("**", "**");

/// Exact filters, combined with AND (the filter flags of docs/contract.md,
/// "The command line").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub skill: Option<String>,
    pub caller: Option<String>,
    pub channel: Option<String>,
    pub status: Option<String>,
    /// started_at at or after (µs).
    pub since: Option<Micros>,
    /// started_at at or before (µs).
    pub until: Option<Micros>,
}

/// One matching run.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub run: Run,
    pub score: f32,
    /// A short piece of the best matching text, matches marked `**so**`.
    pub snippet: String,
}

impl Hit {
    /// The contract run view plus `"score"` and `"snippet"`.
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(512);
        self.run.write_json_fields(&mut s);
        s.push_str(",\"score\":");
        json_f64(self.score as f64, &mut s);
        s.push_str(",\"snippet\":");
        json_string(&self.snippet, &mut s);
        s.push('}');
        s
    }
}

/// Field names a query may use, for error messages.
const QUERY_FIELDS: &str = "inputs, output, error, logs (text); id, skill_id, caller_id, channel_id, parent_run_id, status, tool, error_type, event_type (exact); started_at (date range)";

fn explain(query: &str, e: QueryParserError) -> FullTextError {
    let message = match e {
        QueryParserError::SyntaxError(_) => {
            let (_, errs) = tantivy::query_grammar::parse_query_lenient(query);
            match errs.first() {
                Some(le) => {
                    let col = query[..le.pos.min(query.len())].chars().count() + 1;
                    format!(
                        "syntax error at character {col}: {} (near {:?}); write words, \"a phrase\", field:value, AND/OR/NOT, +must -exclude, field:[a TO b]",
                        le.message,
                        query.get(le.pos..).unwrap_or("").chars().take(20).collect::<String>()
                    )
                }
                None => "syntax error; write words, \"a phrase\", field:value, AND/OR/NOT, +must -exclude, field:[a TO b]".to_string(),
            }
        }
        QueryParserError::FieldDoesNotExist(f) => {
            format!("unknown field {f:?}; the fields are {QUERY_FIELDS}")
        }
        QueryParserError::FieldNotIndexed(f) => {
            format!("field {f:?} cannot be searched; the fields are {QUERY_FIELDS}")
        }
        other => other.to_string(),
    };
    FullTextError::Query {
        query: query.to_string(),
        message,
    }
}

/// A group of only excluding clauses (`a AND NOT b` parses as `+a +(-b)`)
/// matches nothing in tantivy; give each such group "everything" to
/// exclude from, as a reader of the query expects.
fn with_positive(ast: UserInputAst) -> UserInputAst {
    match ast {
        UserInputAst::Clause(clauses) => {
            let only_excluding =
                !clauses.is_empty() && clauses.iter().all(|(o, _)| *o == Some(Occur::MustNot));
            let mut clauses: Vec<(Option<Occur>, UserInputAst)> = clauses
                .into_iter()
                .map(|(o, a)| (o, with_positive(a)))
                .collect();
            if only_excluding {
                clauses.push((
                    Some(Occur::Must),
                    UserInputAst::Leaf(Box::new(UserInputLeaf::All)),
                ));
            }
            UserInputAst::Clause(clauses)
        }
        UserInputAst::Boost(inner, b) => UserInputAst::Boost(Box::new(with_positive(*inner)), b),
        leaf => leaf,
    }
}

fn term_filter(field: Field, value: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(
        Term::from_field_text(field, value),
        IndexRecordOption::Basic,
    ))
}

impl FullText {
    /// Parse `query` in tantivy's syntax; the error names the fault.
    pub fn parse_query(&self, query: &str) -> Result<Box<dyn Query>, FullTextError> {
        if query.trim().is_empty() {
            return Ok(Box::new(AllQuery));
        }
        let schema = self.inner.index.schema();
        let fields = DEFAULT_FIELDS
            .iter()
            .filter_map(|n| schema.get_field(n).ok())
            .collect();
        let mut qp = QueryParser::for_index(&self.inner.index, fields);
        qp.set_conjunction_by_default();
        let ast = tantivy::query_grammar::parse_query(query)
            .map_err(|_| explain(query, QueryParserError::SyntaxError(query.to_string())))?;
        qp.build_query_from_user_input_ast(with_positive(ast))
            .map_err(|e| explain(query, e))
    }

    /// Runs matching `query` and `filters`, best first, at most `limit`.
    pub fn search(
        &self,
        query: &str,
        filters: &Filters,
        limit: usize,
    ) -> Result<Vec<Hit>, FullTextError> {
        let user = self.parse_query(query)?;
        let f = &self.inner.f;
        let mut must: Vec<Box<dyn Query>> = vec![term_filter(f.kind, KIND_RUN)];
        for (field, v) in [
            (f.skill_id, &filters.skill),
            (f.caller_id, &filters.caller),
            (f.channel_id, &filters.channel),
            (f.status, &filters.status),
        ] {
            if let Some(v) = v {
                must.push(term_filter(field, v));
            }
        }
        if filters.since.is_some() || filters.until.is_some() {
            let lo = filters.since.map_or(Bound::Unbounded, |t| {
                Bound::Included(Term::from_field_i64(f.started_us, t))
            });
            let hi = filters.until.map_or(Bound::Unbounded, |t| {
                Bound::Included(Term::from_field_i64(f.started_us, t))
            });
            must.push(Box::new(RangeQuery::new(lo, hi)));
        }
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, user.box_clone())];
        for q in must {
            clauses.push((Occur::Must, Box::new(ConstScoreQuery::new(q, 0.0))));
        }
        let full = BooleanQuery::new(clauses);
        let limit = limit.clamp(1, MAX_LIMIT);
        let searcher = self.inner.reader.searcher();
        // tantivy 0.27 trips its own debug assertion on some negated phrase
        // queries (`-"0 1 in"`, found by fuzz/search_query): a query must
        // never bring the caller down, so such a panic is a query error.
        let top = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            searcher.search(&full, &TopDocs::with_limit(limit).order_by_score())
        }))
        .map_err(|_| FullTextError::Query {
            query: query.to_string(),
            message: "the search library failed on this query; rephrase it (negated phrases are the known case)".into(),
        })?
        .map_err(FullTextError::index("searching"))?;
        // Snippets from the field that matched, most telling first.
        let mut gens = Vec::new();
        for field in [f.error, f.output, f.logs, f.inputs] {
            let mut g = SnippetGenerator::create(&searcher, &*user, field)
                .map_err(FullTextError::index("making snippets"))?;
            g.set_max_num_chars(SNIPPET_CHARS);
            gens.push((field, g));
        }
        let mut hits = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let doc: TantivyDocument = searcher
                .doc(addr)
                .map_err(FullTextError::index("reading a stored run"))?;
            let run_json = stored_text(&doc, f.run)
                .ok_or_else(|| FullTextError::Corrupt("a stored run is missing".into()))?;
            let run = run_from_json(run_json)?;
            let mut snippet = String::new();
            for (field, g) in &gens {
                let text: std::borrow::Cow<str> = if *field == f.error {
                    run.error.as_str().into()
                } else if *field == f.output {
                    run.output.as_str().into()
                } else if *field == f.logs {
                    stored_text(&doc, f.logs).unwrap_or("").into()
                } else {
                    inputs_text(&run.inputs).into()
                };
                let mut sn = g.snippet(&text);
                if !sn.highlighted().is_empty() {
                    sn.set_snippet_prefix_postfix(HIGHLIGHT.0, HIGHLIGHT.1);
                    snippet = render(&sn);
                    break;
                }
            }
            if snippet.is_empty() {
                let base = if run.error.is_empty() {
                    &run.output
                } else {
                    &run.error
                };
                snippet = base.chars().take(SNIPPET_CHARS).collect();
            }
            hits.push(Hit {
                run,
                score,
                snippet,
            });
        }
        Ok(hits)
    }
}

/// The snippet's fragment with its matches marked, as plain text (no HTML
/// escaping: the JSON writer escapes what it must), newlines as spaces.
fn render(sn: &tantivy::snippet::Snippet) -> String {
    let frag = sn.fragment();
    let mut out = String::with_capacity(frag.len() + 16);
    let mut at = 0;
    for r in sn.highlighted() {
        if r.start < at || r.end > frag.len() {
            continue;
        }
        out.push_str(&frag[at..r.start]);
        out.push_str(HIGHLIGHT.0);
        out.push_str(&frag[r.start..r.end]);
        out.push_str(HIGHLIGHT.1);
        at = r.end;
    }
    out.push_str(&frag[at..]);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}
