//! Writing and reading the Parquet files: zstd, row groups sized for
//! scanning, LSN and time columns delta-encoded, and the key-value
//! metadata that ties each file to its segment of the log.

use std::collections::BTreeMap;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;

use crate::error::{ExportError, Result};

/// Rows per row group: about 1 Mi rows, 20-60 MB compressed for events,
/// the size DuckDB, Spark and Trino split scans on.
pub const ROW_GROUP_ROWS: usize = 1 << 20;
/// Rows handed to the writer per batch (bounds the builders' memory).
/// A segment holds some 60,000 events: at 64 Ki rows a segment was one
/// batch, so its rows were all built before its encoding began; at 16 Ki
/// the encoder thread works on one batch while the next is built, and the
/// builders stay a quarter of the size (docs/benchmarks.md, "exp31").
pub const BATCH_ROWS: usize = 16 * 1024;
/// zstd level 1: the fastest; the files stay far below half the
/// segments' size (docs/benchmarks.md), so a higher level buys little.
pub const ZSTD_LEVEL: i32 = 1;
/// Rows a data page may hold at most: as many as a row group, so a page
/// ends at the data page size (1 MiB) or with its row group. parquet-rs'
/// default, 20,000 rows, cut every narrow column of a segment's file
/// (some 60,000 rows) into three or four small pages, each with its own
/// header, statistics, index entries, buffers and zstd context reset
/// (docs/benchmarks.md, "exp37").
pub const PAGE_ROWS: usize = ROW_GROUP_ROWS;

/// Key-value metadata keys every file carries.
pub mod keys {
    pub const FORMAT: &str = "auditlog.export_format";
    pub const LOG_FORMAT: &str = "auditlog.format_version";
    pub const TABLE: &str = "auditlog.table";
    pub const LOG_ID: &str = "auditlog.log_id";
    pub const SEGMENT: &str = "auditlog.segment";
    pub const FIRST_LSN: &str = "auditlog.first_lsn";
    pub const LAST_LSN: &str = "auditlog.last_lsn";
    pub const PREV_DIGEST: &str = "auditlog.prev_digest";
    pub const DIGEST: &str = "auditlog.digest";
    pub const DAY: &str = "auditlog.dt";
    pub const ROWS: &str = "auditlog.rows";
    pub const RUNS_THROUGH_SEGMENT: &str = "auditlog.runs_through_segment";
}

/// Columns holding (nearly) increasing integers: delta-encoded, no
/// dictionary.
const DELTA_COLUMNS: &[&str] = &[
    "lsn",
    "block_lsn",
    "start_lsn",
    "ts",
    "started_at",
    "finished_at",
];

/// Columns whose values rarely repeat: no dictionary (it would be built,
/// a hash per value, and then given up for every page), zstd alone.
/// Names, statuses, tools and small numeric sets (`seq`, `exit_code`,
/// `http_status`, `segment`) keep their dictionaries.
const PLAIN_COLUMNS: &[&str] = &[
    // Ids, JSON texts, free text.
    "run_id",
    "id",
    "parent_run_id",
    "inputs",
    "payload",
    "output",
    "error",
    "extra",
    "args_summary",
    "input_hash",
    // Numbers measured per run or per call (durations, sizes, token
    // counts): without a dictionary the files are also smaller
    // (docs/benchmarks.md, "exp31").
    "tool_calls",
    "runtime_seconds",
    "input_tokens",
    "output_tokens",
    "thinking_tokens",
    "duration_ms",
    "result_bytes",
];

/// The columns readers filter on: page statistics (min/max, null count,
/// and so the column and offset indexes), which let DuckDB, Spark and
/// Trino skip row groups and pages of a range of LSNs or instants, a run
/// id, a kind, a skill, a status or a tool. docs/export.md.
const PRUNE_COLUMNS: &[&str] = &[
    "segment",
    "lsn",
    "block_lsn",
    "ts",
    "start_lsn",
    "started_at",
    "finished_at",
    "run_id",
    "id",
    "kind",
    "skill_id",
    "status",
    "tool",
    "event_type",
];

/// One value per file (they are partition columns too): row-group
/// statistics, which cost a compare per row but say the file's value.
const CHUNK_STATISTICS: &[&str] = &["log_id", "host"];

/// How much statistics column `name` gets. Every other column (JSON and
/// free texts, ids other than the run's, counts, tokens, tool-call
/// details) gets none: no reader prunes on the smallest JSON text or
/// token count, and finding them cost the writer a compare per value
/// (string compares were ~3-4% of an export's CPU samples).
fn statistics_of(name: &str) -> EnabledStatistics {
    if PRUNE_COLUMNS.contains(&name) {
        EnabledStatistics::Page
    } else if CHUNK_STATISTICS.contains(&name) {
        EnabledStatistics::Chunk
    } else {
        EnabledStatistics::None
    }
}

fn properties(schema: &SchemaRef, meta: Vec<KeyValue>) -> Result<WriterProperties> {
    let level = ZstdLevel::try_new(ZSTD_LEVEL).map_err(|e| ExportError::parquet("zstd", e))?;
    let mut p = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        // Data pages V2: parquet-rs compresses a V2 page's values straight
        // into the page's buffer; a V1 page was first copied whole into a
        // buffer of its uncompressed size, which zstd's bound then grew
        // (a realloc copying the untouched megabyte, page faults on both)
        // and `shrink_to_fit` copied again, for every page of every column
        // (docs/benchmarks.md, "exp35", "exp37"). DuckDB, Spark, Trino and
        // parquet-rs read V2 pages; the rows are the same.
        .set_writer_version(WriterVersion::PARQUET_2_0)
        // V2's own fallback encodings would be DELTA_BYTE_ARRAY for strings
        // and DELTA_BINARY_PACKED for every integer: plain values, as the
        // V1 files had, but for the columns set below.
        .set_encoding(Encoding::PLAIN)
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by(format!(
            "auditlog-export {} (parquet-rs)",
            env!("CARGO_PKG_VERSION")
        ))
        .set_key_value_metadata(Some(meta));
    for f in schema.fields() {
        let name = f.name().as_str();
        let col = ColumnPath::from(name);
        if DELTA_COLUMNS.contains(&name) {
            p = p
                .set_column_dictionary_enabled(col.clone(), false)
                .set_column_encoding(col.clone(), Encoding::DELTA_BINARY_PACKED);
        } else if PLAIN_COLUMNS.contains(&name) {
            p = p.set_column_dictionary_enabled(col.clone(), false);
        }
        p = p.set_column_statistics_enabled(col, statistics_of(name));
    }
    Ok(p.build())
}

/// One Parquet file being written into memory. Encoding and compression
/// run on a thread of the file's own, so the caller goes on decoding
/// events and building the next batch meanwhile (the export's two stages
/// overlap on two cores).
pub struct FileWriter {
    name: String,
    tx: Option<std::sync::mpsc::SyncSender<RecordBatch>>,
    worker: Option<std::thread::JoinHandle<Result<Vec<u8>>>>,
    rows: u64,
}

impl FileWriter {
    /// `name` is for messages; `meta` goes into the footer.
    pub fn new(name: &str, schema: SchemaRef, meta: &BTreeMap<String, String>) -> Result<Self> {
        Self::with_capacity(name, schema, meta, 0)
    }

    /// As [`FileWriter::new`], with room for a file of about `bytes` made
    /// up front (the file grows in memory until it is uploaded; grown by
    /// doubling from nothing, it would be copied a dozen times).
    pub fn with_capacity(
        name: &str,
        schema: SchemaRef,
        meta: &BTreeMap<String, String>,
        bytes: usize,
    ) -> Result<Self> {
        let kv = meta
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
            .collect();
        let props = properties(&schema, kv)?;
        let mut writer = ArrowWriter::try_new(Vec::with_capacity(bytes), schema, Some(props))
            .map_err(|e| ExportError::parquet(name, e))?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<RecordBatch>(2);
        let owned = name.to_string();
        let worker = std::thread::Builder::new()
            .name("auditlog-parquet".into())
            .spawn(move || {
                for batch in rx {
                    writer
                        .write(&batch)
                        .map_err(|e| ExportError::parquet(&owned, e))?;
                }
                writer
                    .into_inner()
                    .map_err(|e| ExportError::parquet(&owned, e))
            })
            .map_err(|e| {
                ExportError::parquet(name, format!("cannot start a writer thread: {e}"))
            })?;
        Ok(FileWriter {
            name: name.to_string(),
            tx: Some(tx),
            worker: Some(worker),
            rows: 0,
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send(batch.clone()).is_ok());
        if sent {
            return Ok(());
        }
        // The worker stopped: its error says why.
        self.tx = None;
        match self.worker.take().map(|w| w.join()) {
            Some(Ok(Err(e))) => Err(e),
            _ => Err(ExportError::parquet(
                &self.name,
                "the writer thread stopped",
            )),
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The whole file's bytes.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        self.tx = None;
        match self.worker.take().map(|w| w.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(ExportError::parquet(
                &self.name,
                "the writer thread panicked",
            )),
            None => Err(ExportError::parquet(
                &self.name,
                "the writer thread stopped",
            )),
        }
    }
}

/// A Parquet file read back: its key-value metadata and its rows.
pub struct ReadFile {
    pub meta: BTreeMap<String, String>,
    pub batches: Vec<RecordBatch>,
    pub schema: SchemaRef,
}

/// Read a whole Parquet file from its bytes.
pub fn read(name: &str, bytes: Vec<u8>) -> Result<ReadFile> {
    let b = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
        .map_err(|e| ExportError::parquet(name, e))?;
    let meta = b
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let schema = b.schema().clone();
    let reader = b
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| ExportError::parquet(name, e))?;
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| ExportError::parquet(name, e))?;
    Ok(ReadFile {
        meta,
        batches,
        schema,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, ArrayRef, StringArray, UInt64Array};
    use arrow_schema::{DataType, Field, Schema};
    use parquet::basic::Encoding;
    use parquet::column::page::Page;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use std::sync::Arc;

    /// A file of `rows` rows: an LSN column and a text column.
    fn file(rows: usize) -> Vec<u8> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("lsn", DataType::UInt64, false),
            Field::new("payload", DataType::Utf8, true),
        ]));
        let lsn: ArrayRef = Arc::new(UInt64Array::from_iter_values(0..rows as u64));
        let payload: ArrayRef = Arc::new(StringArray::from_iter(
            (0..rows).map(|i| (i % 3 != 0).then(|| format!("{{\"n\":{i}}}"))),
        ));
        let batch = RecordBatch::try_new(schema.clone(), vec![lsn, payload]).unwrap();
        let mut w = FileWriter::new("t", schema, &BTreeMap::new()).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn pages_are_v2_plain_or_delta_and_not_cut_at_20000_rows() {
        let rows = 60_000;
        let bytes = file(rows);
        let r = SerializedFileReader::new(Bytes::from(bytes.clone())).unwrap();
        let rg = r.get_row_group(0).unwrap();
        for (col, want) in [(0, Encoding::DELTA_BINARY_PACKED), (1, Encoding::PLAIN)] {
            let mut pages = rg.get_column_page_reader(col).unwrap();
            let mut n = 0;
            while let Some(page) = pages.get_next_page().unwrap() {
                match page {
                    Page::DataPageV2 { encoding, .. } => {
                        assert_eq!(encoding, want, "column {col}");
                        n += 1;
                    }
                    other => panic!("column {col}: {:?} page", other.page_type()),
                }
            }
            // Some 500 KB of values: one page, not three of 20,000 rows.
            assert_eq!(n, 1, "column {col}");
        }
        // And the rows read back.
        let back = read("t", bytes).unwrap();
        let got: usize = back.batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(got, rows);
        let payload = back.batches[0]
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert!(payload.is_null(0));
        assert_eq!(payload.value(1), "{\"n\":1}");
    }
}
