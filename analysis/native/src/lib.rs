//! Python binding (called by analysis/kernels.py): the kernels on numpy arrays and Arrow
//! buffers (buffer protocol), GIL released; a bad input is a ValueError naming the array.

pub mod forest;
pub mod ids;
pub mod index;
pub mod walk;

#[cfg(feature = "python")]
mod python {
    use crate::forest::{parents_first, roots, skew_deltas, EventTree};
    use crate::ids::{IndexChunk, StrChunk, TraceChunk};
    use crate::index::{IdColumns, IndexBuilder as Builder};
    use crate::walk::{event_path_sums as walk_sums, Labels, PathSums};
    use pyo3::buffer::{Element, PyBuffer};
    use pyo3::exceptions::PyValueError;
    use pyo3::ffi;
    use pyo3::prelude::*;
    use pyo3::types::PyDict;
    use std::ffi::{c_int, c_void};

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

    /// An array a kernel made, handed to Python without a copy: np.frombuffer views its bytes
    /// (writable, as numpy's own arrays are) and keeps it alive. Copying the id index's arrays
    /// (~0.45 GB at 10 M spans) into new numpy arrays kept the builder's finish() at 2.1 s; it
    /// is 0.95 s without, fresh pages being what the analysis spends most system time on.
    #[pyclass(frozen)]
    struct Owned {
        _values: Box<dyn std::any::Any + Send + Sync>,
        addr: usize,
        len: usize,
    }

    #[pymethods]
    impl Owned {
        /// # Safety
        /// Called by Python with a Py_buffer to fill.
        unsafe fn __getbuffer__(
            slf: Bound<'_, Self>,
            view: *mut ffi::Py_buffer,
            flags: c_int,
        ) -> PyResult<()> {
            let (addr, len) = (slf.get().addr, slf.get().len);
            // SAFETY: the bytes belong to this object, which the view holds a reference to
            let filled = unsafe {
                ffi::PyBuffer_FillInfo(
                    view,
                    slf.as_ptr(),
                    addr as *mut c_void,
                    len as ffi::Py_ssize_t,
                    0,
                    flags,
                )
            };
            if filled == -1 {
                return Err(PyErr::fetch(slf.py()));
            }
            Ok(())
        }
    }

    /// The values as a Python object exporting their bytes (see Owned).
    fn out<'py, T: Copy + Send + Sync + 'static>(py: Python<'py>, v: Vec<T>) -> PyResult<Bound<'py, PyAny>> {
        let (addr, len) = (v.as_ptr() as usize, std::mem::size_of_val(&v[..]));
        Ok(Bound::new(
            py,
            Owned {
                _values: Box::new(v),
                addr,
                len,
            },
        )?
        .into_any())
    }

    fn err(e: String) -> PyErr {
        PyValueError::new_err(e)
    }

    /// The event tree's arrays as views (the buffers outlive it).
    fn event_tree<'a>(
        event_parent: &'a PyBuffer<i64>,
        parent: &'a PyBuffer<i64>,
        start: &'a PyBuffer<i64>,
        end: &'a PyBuffer<i64>,
        kind: &'a PyBuffer<i8>,
    ) -> PyResult<EventTree<'a>> {
        Ok(EventTree {
            parent: view("event_parent", event_parent)?,
            span_parent: view("parent", parent)?,
            start: view("start", start)?,
            end: view("end", end)?,
            kind: view("kind", kind)?,
        })
    }

    /// The root above each span of the event tree (int64 values in an Owned buffer; -1 where
    /// no root is reached).
    #[pyfunction]
    fn event_roots<'py>(py: Python<'py>, event_parent: PyBuffer<i64>) -> PyResult<Bound<'py, PyAny>> {
        let parent = view("event_parent", &event_parent)?;
        crate::forest::check_parents(parent, "event_parent").map_err(err)?;
        let top = py.detach(|| roots(parent, &parents_first(parent)));
        out(py, top)
    }

    /// Clock-skew shifts (int64) and corrected flags (bool) per span, as Owned buffers.
    #[pyfunction]
    fn skew_shifts<'py>(
        py: Python<'py>,
        event_parent: PyBuffer<i64>,
        parent: PyBuffer<i64>,
        start: PyBuffer<i64>,
        end: PyBuffer<i64>,
        kind: PyBuffer<i8>,
        host: PyBuffer<i32>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let t = event_tree(&event_parent, &parent, &start, &end, &kind)?;
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
        Ok((out(py, delta)?, out(py, corrected)?))
    }

    /// An optional array of one value per target.
    fn per_target<'a>(name: &str, b: &'a Option<PyBuffer<i64>>, n: usize) -> PyResult<Option<&'a [i64]>> {
        let Some(b) = b else { return Ok(None) };
        let v = view(name, b)?;
        if v.len() != n {
            return Err(err(format!("{name} holds {} values for {n} targets", v.len())));
        }
        Ok(Some(v))
    }

    /// Event-mode critical paths of `targets`, summed per (walker, label):
    /// (walker int64, label int32, total ns int64, first start int64; per walker the path's ns
    /// int64 and its row count uint32), as Owned buffers. With `ids` and `origin` (one per
    /// target), rows name walker w as ids[w] and give first − origin[w] (the caller's delivery
    /// ids and path origins: mapped here in one pass instead of by 14 M-row numpy passes).
    #[pyfunction]
    #[pyo3(signature = (event_parent, parent, start, end, kind, hop, targets, n_hops, n_labels, threads = 1, ids = None, origin = None))]
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
        ids: Option<PyBuffer<i64>>,
        origin: Option<PyBuffer<i64>>,
    ) -> PyResult<Bound<'py, pyo3::types::PyTuple>> {
        let t = event_tree(&event_parent, &parent, &start, &end, &kind)?;
        let labels = Labels {
            hop: view("hop", &hop)?,
            n_hops,
            n_labels,
        };
        let targets = view("targets", &targets)?;
        let n = targets.len();
        let (ids, origin) = (per_target("ids", &ids, n)?, per_target("origin", &origin, n)?);
        let mut sums: PathSums = py
            .detach(|| walk_sums(&t, &labels, targets, threads))
            .map_err(err)?;
        py.detach(|| {
            for (w, f) in sums.walker.iter_mut().zip(sums.first.iter_mut()) {
                let i = *w as usize;
                if let Some(origin) = origin {
                    *f -= origin[i];
                }
                if let Some(ids) = ids {
                    *w = ids[i];
                }
            }
        });
        pyo3::types::PyTuple::new(
            py,
            [
                out(py, sums.walker)?,
                out(py, sums.label)?,
                out(py, sums.total)?,
                out(py, sums.first)?,
                out(py, sums.path)?,
                out(py, sums.rows)?,
            ],
        )
    }

    /// One Arrow string chunk as Python hands it over: (validity bitmap or None, its bit offset,
    /// int32 offsets of the chunk's rows, data bytes).
    type ChunkArgs = (Option<PyBuffer<u8>>, usize, PyBuffer<i32>, PyBuffer<u8>);

    fn chunks<'a>(name: &str, args: &'a [ChunkArgs]) -> PyResult<Vec<StrChunk<'a>>> {
        let mut out = Vec::with_capacity(args.len());
        for (valid, bit_offset, offsets, data) in args {
            let c = StrChunk {
                valid: valid.as_ref().map(|v| view(name, v)).transpose()?,
                bit_offset: *bit_offset,
                offsets: view(name, offsets)?,
                data: view(name, data)?,
            };
            c.check(name).map_err(err)?;
            out.push(c);
        }
        Ok(out)
    }

    /// A dictionary chunk's indices: (validity bitmap or None, its bit offset, int32 indices).
    type IndexArgs = (Option<PyBuffer<u8>>, usize, PyBuffer<i32>);

    fn trace_chunks<'a>(args: &'a [(Option<IndexArgs>, ChunkArgs)]) -> PyResult<Vec<TraceChunk<'a>>> {
        let mut out = Vec::with_capacity(args.len());
        for (indices, ids) in args {
            let ids = chunks("trace_id", std::slice::from_ref(ids))?
                .pop()
                .expect("one chunk");
            let indices = match indices {
                None => None,
                Some((valid, bit_offset, idx)) => {
                    let ix = IndexChunk {
                        valid: valid.as_ref().map(|v| view("trace_id", v)).transpose()?,
                        bit_offset: *bit_offset,
                        indices: view("trace_id", idx)?,
                    };
                    ix.check("trace_id").map_err(err)?;
                    Some(ix)
                }
            };
            out.push(TraceChunk { ids, indices });
        }
        Ok(out)
    }

    /// The span index of prepare(), built from the id columns a batch at a time (a Parquet
    /// row group, say): `add` parses a batch's ids, `finish` returns the index as a dict of
    /// Owned buffers named as spans.IdIndex's fields. Either returns False/None once an id is
    /// not spelled as the readers write it (the caller then takes the numpy path).
    #[pyclass]
    struct IndexBuilder {
        inner: Option<Builder>,
    }

    #[pymethods]
    impl IndexBuilder {
        /// `rows`: how many rows the batches will hold in all (room is made for them once).
        #[new]
        #[pyo3(signature = (rows = 0))]
        fn new(rows: usize) -> Self {
            IndexBuilder {
                inner: Some(Builder::with_capacity(rows)),
            }
        }

        /// One batch of rows; `link_row` counts from the batch's first row.
        #[allow(clippy::too_many_arguments)]
        fn add(
            &mut self,
            py: Python<'_>,
            trace: Vec<(Option<IndexArgs>, ChunkArgs)>,
            span: Vec<ChunkArgs>,
            parent: Vec<ChunkArgs>,
            link_trace: Vec<ChunkArgs>,
            link_span: Vec<ChunkArgs>,
            link_row: PyBuffer<i64>,
        ) -> PyResult<bool> {
            let cols = IdColumns {
                trace: trace_chunks(&trace)?,
                span: chunks("span_id", &span)?,
                parent: chunks("parent_span_id", &parent)?,
                link_trace: chunks("links.trace_id", &link_trace)?,
                link_span: chunks("links.span_id", &link_span)?,
                link_row: view("link_row", &link_row)?,
            };
            let b = self.building()?;
            py.detach(|| b.add(&cols)).map_err(err)
        }

        fn finish<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
            let b = self.inner.take().ok_or_else(finished)?;
            let Some(ix) = py.detach(|| b.finish()) else {
                return Ok(None);
            };
            let d = PyDict::new(py);
            for (name, v) in [
                ("keep", ix.keep),
                ("trace", ix.trace),
                ("span_key", ix.span_key),
                ("parent", ix.parent),
                ("link_parent", ix.link_parent),
                ("trace_lo", ix.trace_lo),
                ("trace_hi", ix.trace_hi),
                ("duplicates", ix.duplicates),
            ] {
                d.set_item(name, out(py, v)?)?;
            }
            d.set_item("has_parent_id", out(py, ix.has_parent)?)?;
            d.set_item("trace_hex", out(py, ix.trace_hex)?)?;
            Ok(Some(d))
        }
    }

    impl IndexBuilder {
        fn building(&mut self) -> PyResult<&mut Builder> {
            self.inner.as_mut().ok_or_else(finished)
        }
    }

    fn finished() -> PyErr {
        PyValueError::new_err("IndexBuilder.finish() was called already")
    }

    #[pymodule]
    fn hopscope_analysis_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add_function(wrap_pyfunction!(event_roots, m)?)?;
        m.add_function(wrap_pyfunction!(skew_shifts, m)?)?;
        m.add_class::<IndexBuilder>()?;
        m.add_function(wrap_pyfunction!(event_path_sums, m)?)
    }
}
