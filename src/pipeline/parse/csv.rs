//! One CSV record (RFC 4180 quoting: `"a,b"`, `""` for a quote) into the
//! named `columns`; values past the last name are `_3`, `_4` (their index).

use vrl::value::{KeyString, ObjectMap, Value};

pub struct Csv {
    columns: Vec<String>,
    delimiter: u8,
}

impl Csv {
    pub fn new(columns: &[String], delimiter: Option<&str>) -> Result<Csv, String> {
        if columns.is_empty() {
            return Err("format: csv needs `columns` (the names of the values, in order)".into());
        }
        let delimiter = match delimiter.map(str::as_bytes) {
            None => b',',
            Some([d]) if *d != b'"' => *d,
            Some(_) => return Err("delimiter: one character, not `\"`".into()),
        };
        Ok(Csv {
            columns: columns.to_vec(),
            delimiter,
        })
    }

    pub fn fields(&self, line: &[u8]) -> Result<ObjectMap, String> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut values: Vec<Vec<u8>> = vec![Vec::new()];
        let mut quoted = false;
        let mut i = 0;
        while i < line.len() {
            let b = line[i];
            let field = values.last_mut().ok_or("no field")?;
            if quoted {
                if b == b'"' {
                    if line.get(i + 1) == Some(&b'"') {
                        field.push(b'"');
                        i += 1;
                    } else {
                        quoted = false;
                    }
                } else {
                    field.push(b);
                }
            } else if b == b'"' && field.is_empty() {
                quoted = true;
            } else if b == self.delimiter {
                values.push(Vec::new());
            } else {
                field.push(b);
            }
            i += 1;
        }
        if quoted {
            return Err("a quoted value is not closed".into());
        }
        let mut out = ObjectMap::new();
        for (i, v) in values.into_iter().enumerate() {
            let name = match self.columns.get(i) {
                Some(c) => c.clone(),
                None => format!("_{i}"),
            };
            out.insert(
                KeyString::from(name),
                Value::from(String::from_utf8_lossy(&v).into_owned()),
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_and_extra_columns() {
        let c = Csv::new(&["host".into(), "team".into()], None).expect("csv");
        let f = c
            .fields(b"web-1,\"payments, \"\"core\"\"\",extra\r\n")
            .expect("row");
        assert_eq!(f["host"], Value::from("web-1"));
        assert_eq!(f["team"], Value::from("payments, \"core\""));
        assert_eq!(f["_2"], Value::from("extra"));
        assert!(c.fields(b"\"open").is_err());
        let tabs = Csv::new(&["a".into()], Some("\t")).expect("csv");
        assert_eq!(tabs.fields(b"x\ty").expect("row")["_1"], Value::from("y"));
    }
}
