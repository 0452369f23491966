//! Column builders: the flat buffers Python turns into Arrow arrays without another pass.

/// Arrow's i32 offsets: a leading 0, then where each row ends.
pub struct Offsets(pub Vec<i32>);

impl Default for Offsets {
    fn default() -> Self {
        Offsets(vec![0])
    }
}

impl Offsets {
    /// Ends the current row at `end` (items so far); `what` names the items in the error.
    pub fn close_row(&mut self, end: usize, what: &str) -> Result<(), String> {
        let end = i32::try_from(end).map_err(|_| format!("over 2G {what} in one file"))?;
        self.0.push(end);
        Ok(())
    }

    /// Appends the rows of a later chunk, shifted past this one's last end.
    pub fn append(&mut self, other: &Offsets, what: &str) -> Result<(), String> {
        let base = *self.0.last().expect("offsets start with 0");
        if base as i64 + *other.0.last().expect("offsets start with 0") as i64 > i32::MAX as i64 {
            return Err(format!("over 2G {what} in one file"));
        }
        self.0.extend(other.0[1..].iter().map(|o| o + base));
        Ok(())
    }
}

/// A nullable UTF-8 column as Arrow lays it out: i32 offsets, the bytes, one validity byte per row
/// (Python packs the validity into a bitmap).
#[derive(Default)]
pub struct StrCol {
    pub offsets: Offsets,
    pub data: Vec<u8>,
    pub valid: Vec<u8>,
}

impl StrCol {
    pub fn len(&self) -> usize {
        self.valid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.valid.is_empty()
    }

    pub fn push(&mut self, value: Option<&str>) -> Result<(), String> {
        match value {
            Some(s) => self.push_with(|data| {
                data.extend_from_slice(s.as_bytes());
                Ok(())
            }),
            None => {
                self.valid.push(0);
                self.offsets.close_row(self.data.len(), "text bytes")
            }
        }
    }

    /// A non-null row whose bytes `write` appends (an id spelled while it is checked).
    pub fn push_with(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
    ) -> Result<(), String> {
        write(&mut self.data)?;
        self.valid.push(1);
        self.offsets.close_row(self.data.len(), "text bytes")
    }

    /// Append another column's rows (a later chunk of the same file).
    pub fn append(&mut self, other: &StrCol) -> Result<(), String> {
        self.offsets.append(&other.offsets, "text bytes")?;
        self.data.extend_from_slice(&other.data);
        self.valid.extend_from_slice(&other.valid);
        Ok(())
    }
}

/// Attribute maps, one list of (key, value) per row. Values are text; doubles are kept as
/// numbers with their entry positions, because their text must be Arrow's own spelling
/// (Python casts them with Arrow and puts them in place).
#[derive(Default)]
pub struct KvCol {
    pub row_offsets: Offsets,
    pub keys: StrCol,
    pub values: StrCol,
    pub double_pos: Vec<u32>,
    pub double_val: Vec<f64>,
}

impl KvCol {
    pub fn push_text(&mut self, key: &str, value: &str) -> Result<(), String> {
        self.keys.push(Some(key))?;
        self.values.push(Some(value))
    }

    pub fn push_double(&mut self, key: &str, value: f64) -> Result<(), String> {
        let pos = u32::try_from(self.keys.len()).map_err(|_| "over 4G attributes in one file".to_string())?;
        self.double_pos.push(pos);
        self.double_val.push(value);
        self.keys.push(Some(key))?;
        self.values.push(Some(""))
    }

    pub fn close_row(&mut self) -> Result<(), String> {
        self.row_offsets.close_row(self.keys.len(), "attributes")
    }

    pub fn append(&mut self, other: &KvCol) -> Result<(), String> {
        let entries = self.keys.len() as u32;
        self.row_offsets.append(&other.row_offsets, "attributes")?;
        self.keys.append(&other.keys)?;
        self.values.append(&other.values)?;
        self.double_pos
            .extend(other.double_pos.iter().map(|p| p + entries));
        self.double_val.extend_from_slice(&other.double_val);
        Ok(())
    }
}
