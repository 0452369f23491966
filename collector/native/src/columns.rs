//! Column builders: the flat buffers Python turns into Arrow arrays without another pass.

/// A nullable UTF-8 column as Arrow lays it out: i32 offsets, the bytes, one validity byte per row
/// (Python packs the validity into a bitmap).
#[derive(Default)]
pub struct StrCol {
    pub offsets: Vec<i32>,
    pub data: Vec<u8>,
    pub valid: Vec<u8>,
}

impl StrCol {
    pub fn new() -> Self {
        StrCol {
            offsets: vec![0],
            data: Vec::new(),
            valid: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.valid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.valid.is_empty()
    }

    pub fn push(&mut self, value: Option<&str>) -> Result<(), String> {
        if let Some(s) = value {
            self.data.extend_from_slice(s.as_bytes());
        }
        self.valid.push(value.is_some() as u8);
        self.close_row()
    }

    fn close_row(&mut self) -> Result<(), String> {
        let end = i32::try_from(self.data.len())
            .map_err(|_| "a text column passes 2 GiB in one file".to_string())?;
        self.offsets.push(end);
        Ok(())
    }

    /// Append another column's rows (a later chunk of the same file).
    pub fn append(&mut self, other: &StrCol) -> Result<(), String> {
        let base = *self.offsets.last().unwrap();
        let total = base as i64 + other.data.len() as i64;
        if total > i32::MAX as i64 {
            return Err("a text column passes 2 GiB in one file".to_string());
        }
        self.data.extend_from_slice(&other.data);
        self.offsets.extend(other.offsets[1..].iter().map(|o| o + base));
        self.valid.extend_from_slice(&other.valid);
        Ok(())
    }
}

/// Attribute maps, one list of (key, value) per row. Values are text; doubles are kept as
/// numbers with their entry positions, because their text must be Arrow's own spelling
/// (Python casts them with Arrow and puts them in place).
#[derive(Default)]
pub struct KvCol {
    pub row_offsets: Vec<i32>,
    pub keys: StrCol,
    pub values: StrCol,
    pub double_pos: Vec<u32>,
    pub double_val: Vec<f64>,
}

impl KvCol {
    pub fn new() -> Self {
        KvCol {
            row_offsets: vec![0],
            keys: StrCol::new(),
            values: StrCol::new(),
            double_pos: Vec::new(),
            double_val: Vec::new(),
        }
    }

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
        let n = i32::try_from(self.keys.len()).map_err(|_| "over 2G attributes in one file".to_string())?;
        self.row_offsets.push(n);
        Ok(())
    }

    pub fn append(&mut self, other: &KvCol) -> Result<(), String> {
        let base = *self.row_offsets.last().unwrap();
        let entries = self.keys.len() as u32;
        self.keys.append(&other.keys)?;
        self.values.append(&other.values)?;
        self.row_offsets
            .extend(other.row_offsets[1..].iter().map(|o| o + base));
        self.double_pos
            .extend(other.double_pos.iter().map(|p| p + entries));
        self.double_val.extend_from_slice(&other.double_val);
        Ok(())
    }
}
