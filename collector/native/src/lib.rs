//! Python binding: `parse_json_lines` / `parse_proto_framed(data, threads, **limits) -> dict` of
//! column buffers, or ValueError naming the first line (record) the strict readers do not accept.
//! A panic never reaches Python as one: it becomes a ValueError too (the caller then reads the
//! buffer with the Python reader).

pub mod columns;
pub mod otlp_json;
pub mod otlp_proto;
pub mod spans;

#[cfg(feature = "python")]
mod python {
    use crate::columns::{KvCol, StrCol};
    use crate::spans::{Limits, Spans};
    use crate::{otlp_json, otlp_proto};
    use pyo3::buffer::PyBuffer;
    use pyo3::exceptions::PyValueError;
    use pyo3::prelude::*;
    use pyo3::types::{PyBytes, PyDict};

    fn bytes<'py, T: Copy>(py: Python<'py>, v: &[T]) -> Bound<'py, PyBytes> {
        // SAFETY: plain-old-data slices (u8, i32, u32, i64, f64) viewed as bytes
        let raw = unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) };
        PyBytes::new(py, raw)
    }

    fn put_str(d: &Bound<PyDict>, name: &str, c: &StrCol) -> PyResult<()> {
        let py = d.py();
        d.set_item(
            name,
            (bytes(py, &c.offsets.0), bytes(py, &c.data), bytes(py, &c.valid)),
        )
    }

    fn put_kv(d: &Bound<PyDict>, name: &str, c: &KvCol) -> PyResult<()> {
        let py = d.py();
        put_str(d, &format!("{name}.keys"), &c.keys)?;
        put_str(d, &format!("{name}.values"), &c.values)?;
        d.set_item(format!("{name}.row_offsets"), bytes(py, &c.row_offsets.0))?;
        d.set_item(format!("{name}.double_pos"), bytes(py, &c.double_pos))?;
        d.set_item(format!("{name}.double_val"), bytes(py, &c.double_val))
    }

    fn to_dict<'py>(py: Python<'py>, s: &Spans) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("n", s.len())?;
        for (name, v) in [
            ("trace_id", &s.trace_id),
            ("span_id", &s.span_id),
            ("kind", &s.kind),
            ("status", &s.status),
            ("derived", &s.derived),
            ("link_trace", &s.link_trace),
            ("link_span", &s.link_span),
        ] {
            d.set_item(name, bytes(py, v))?;
        }
        d.set_item("start", bytes(py, &s.start))?;
        d.set_item("end", bytes(py, &s.end))?;
        d.set_item("link_offsets", bytes(py, &s.link_offsets.0))?;
        d.set_item("resource_of", bytes(py, &s.resource_of))?;
        for (name, c) in [
            ("parent", &s.parent),
            ("name", &s.name),
            ("workload", &s.workload),
            ("event_id", &s.event_id),
            ("hop", &s.hop),
            ("service", &s.service),
            ("stack", &s.stack),
            ("res_workload", &s.res_workload),
        ] {
            put_str(&d, name, c)?;
        }
        put_kv(&d, "attrs", &s.attrs)?;
        put_kv(&d, "res_attrs", &s.res_attrs)?;
        Ok(d)
    }

    /// The buffer's bytes, borrowed for as long as `data` (which holds the export, read-only) lives.
    fn view(data: &PyBuffer<u8>) -> PyResult<&[u8]> {
        if !data.is_c_contiguous() {
            return Err(PyValueError::new_err("the buffer is not contiguous"));
        }
        if data.len_bytes() == 0 {
            return Ok(&[]); // the pointer of an empty export may be null
        }
        // SAFETY: a contiguous, exported (so neither freed nor resized) buffer of len_bytes bytes.
        Ok(unsafe { std::slice::from_raw_parts(data.buf_ptr() as *const u8, data.len_bytes()) })
    }

    fn run<'py>(
        py: Python<'py>,
        data: PyBuffer<u8>,
        threads: usize,
        limits: Limits,
        parse: fn(&[u8], usize, Limits) -> Result<Spans, String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let slice = view(&data)?;
        let parsed = py.detach(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse(slice, threads, limits)))
        });
        match parsed {
            Ok(Ok(spans)) => to_dict(py, &spans),
            Ok(Err(e)) => Err(PyValueError::new_err(e)),
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(PyValueError::new_err(format!(
                    "the native reader panicked: {why}"
                )))
            }
        }
    }

    fn limits(
        max_depth: usize,
        max_record_bytes: usize,
        max_attribute_bytes: usize,
        max_name_bytes: usize,
    ) -> Limits {
        Limits {
            max_depth,
            max_record: max_record_bytes,
            max_value: max_attribute_bytes,
            max_name: max_name_bytes,
        }
    }

    /// OTLP JSON lines (bytes, memoryview) → column buffers, parsed with the GIL released.
    #[pyfunction]
    #[pyo3(signature = (data, threads = 1, max_depth = 64, max_record_bytes = 64 << 20,
                        max_attribute_bytes = 64 << 10, max_name_bytes = 4 << 10))]
    fn parse_json_lines<'py>(
        py: Python<'py>,
        data: PyBuffer<u8>,
        threads: usize,
        max_depth: usize,
        max_record_bytes: usize,
        max_attribute_bytes: usize,
        max_name_bytes: usize,
    ) -> PyResult<Bound<'py, PyDict>> {
        let l = limits(max_depth, max_record_bytes, max_attribute_bytes, max_name_bytes);
        run(py, data, threads, l, otlp_json::parse_with)
    }

    /// The file exporter's length-framed OTLP protobuf → column buffers, GIL released.
    #[pyfunction]
    #[pyo3(signature = (data, threads = 1, max_depth = 64, max_record_bytes = 64 << 20,
                        max_attribute_bytes = 64 << 10, max_name_bytes = 4 << 10))]
    fn parse_proto_framed<'py>(
        py: Python<'py>,
        data: PyBuffer<u8>,
        threads: usize,
        max_depth: usize,
        max_record_bytes: usize,
        max_attribute_bytes: usize,
        max_name_bytes: usize,
    ) -> PyResult<Bound<'py, PyDict>> {
        let l = limits(max_depth, max_record_bytes, max_attribute_bytes, max_name_bytes);
        run(py, data, threads, l, otlp_proto::parse_with)
    }

    #[pymodule]
    fn hopscope_otlp_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add_function(wrap_pyfunction!(parse_json_lines, m)?)?;
        m.add_function(wrap_pyfunction!(parse_proto_framed, m)?)
    }
}
