//! Python binding: the span-tree kernels of analysis/native.py on numpy arrays (buffer
//! protocol), GIL released; a bad input is a ValueError naming the array and the index.

pub mod forest;
pub mod walk;

#[cfg(feature = "python")]
mod python {
    use crate::forest::{parents_first, roots, skew_deltas, EventTree};
    use crate::walk::{event_path_sums as walk_sums, Labels};
    use pyo3::buffer::{Element, PyBuffer};
    use pyo3::exceptions::PyValueError;
    use pyo3::prelude::*;
    use pyo3::types::PyByteArray;

    /// The values of a contiguous numpy array (kept alive and unresized by the export).
    fn view<'a, T: Element>(name: &str, b: &'a PyBuffer<T>) -> PyResult<&'a [T]> {
        if !b.is_c_contiguous() {
            return Err(PyValueError::new_err(format!("{name} is not a contiguous array")));
        }
        if b.item_count() == 0 {
            return Ok(&[]);
        }
        // SAFETY: a C-contiguous exported buffer of item_count items of T (PyBuffer checked the format)
        Ok(unsafe { std::slice::from_raw_parts(b.buf_ptr() as *const T, b.item_count()) })
    }

    /// A writable copy for numpy (np.frombuffer over a bytearray).
    fn out<'py, T: Copy>(py: Python<'py>, v: &[T]) -> Bound<'py, PyByteArray> {
        // SAFETY: plain-old-data values (i64, i32, bool) viewed as bytes
        let raw = unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) };
        PyByteArray::new(py, raw)
    }

    fn err(e: String) -> PyErr {
        PyValueError::new_err(e)
    }

    /// The root above each span of the event tree (int64 bytes; -1 where no root is reached).
    #[pyfunction]
    fn event_roots<'py>(py: Python<'py>, event_parent: PyBuffer<i64>) -> PyResult<Bound<'py, PyByteArray>> {
        let parent = view("event_parent", &event_parent)?;
        crate::forest::check_parents(parent, "event_parent").map_err(err)?;
        let top = py.detach(|| roots(parent, &parents_first(parent)));
        Ok(out(py, &top))
    }

    /// Clock-skew shifts (int64 bytes) and corrected flags (bool bytes) per span.
    #[pyfunction]
    fn skew_shifts<'py>(
        py: Python<'py>,
        event_parent: PyBuffer<i64>,
        parent: PyBuffer<i64>,
        start: PyBuffer<i64>,
        end: PyBuffer<i64>,
        kind: PyBuffer<i8>,
        host: PyBuffer<i32>,
    ) -> PyResult<(Bound<'py, PyByteArray>, Bound<'py, PyByteArray>)> {
        let t = EventTree {
            parent: view("event_parent", &event_parent)?,
            span_parent: view("parent", &parent)?,
            start: view("start", &start)?,
            end: view("end", &end)?,
            kind: view("kind", &kind)?,
        };
        let host = view("host", &host)?;
        t.check().map_err(err)?;
        if host.len() != t.parent.len() {
            return Err(err(format!(
                "host holds {} values for {} spans",
                host.len(),
                t.parent.len()
            )));
        }
        let (delta, corrected) = py.detach(|| skew_deltas(&t, host, &parents_first(t.parent)));
        Ok((out(py, &delta), out(py, &corrected)))
    }

    /// Event-mode critical paths of `targets`, summed per (walker, label):
    /// (walker int64, label int32, total ns int64, first start int64) bytes.
    #[pyfunction]
    #[pyo3(signature = (event_parent, parent, start, end, kind, hop, targets, n_hops, n_labels, threads = 1))]
    #[allow(clippy::too_many_arguments)]
    fn event_path_sums<'py>(
        py: Python<'py>,
        event_parent: PyBuffer<i64>,
        parent: PyBuffer<i64>,
        start: PyBuffer<i64>,
        end: PyBuffer<i64>,
        kind: PyBuffer<i8>,
        hop: PyBuffer<i32>,
        targets: PyBuffer<i64>,
        n_hops: i32,
        n_labels: usize,
        threads: usize,
    ) -> PyResult<Bound<'py, pyo3::types::PyTuple>> {
        let t = EventTree {
            parent: view("event_parent", &event_parent)?,
            span_parent: view("parent", &parent)?,
            start: view("start", &start)?,
            end: view("end", &end)?,
            kind: view("kind", &kind)?,
        };
        let labels = Labels {
            hop: view("hop", &hop)?,
            n_hops,
            n_labels,
        };
        let targets = view("targets", &targets)?;
        let sums = py
            .detach(|| walk_sums(&t, &labels, targets, threads))
            .map_err(err)?;
        pyo3::types::PyTuple::new(
            py,
            [
                out(py, &sums.walker),
                out(py, &sums.label),
                out(py, &sums.total),
                out(py, &sums.first),
            ],
        )
    }

    #[pymodule]
    fn hopscope_analysis_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add_function(wrap_pyfunction!(event_roots, m)?)?;
        m.add_function(wrap_pyfunction!(skew_shifts, m)?)?;
        m.add_function(wrap_pyfunction!(event_path_sums, m)?)
    }
}
