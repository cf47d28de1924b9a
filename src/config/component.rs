//! Sources and destinations are maps of `id: {type: ..., ...}`. The obvious
//! serde model, an internally tagged enum, buffers each component before
//! deserializing it, and buffered values lose their YAML positions: every
//! error inside a component would point at the component's first line.
//!
//! So loading takes two passes. Pass one reads only each component's `type`
//! (with its position). Pass two deserializes each component straight into
//! the struct for its type, unbuffered, so an unknown key or a bad value is
//! reported at its own line and column. Pass two learns the types through a
//! thread-local table that `with_kinds` sets for exactly its duration.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

/// A position in the configuration file (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Loc {
    pub line: u64,
    pub column: u64,
}

impl From<serde_saphyr::Location> for Loc {
    fn from(l: serde_saphyr::Location) -> Self {
        Loc {
            line: l.line(),
            column: l.column(),
        }
    }
}

/// A family of component types that share one section of the config.
pub trait ComponentKind: Sized {
    /// The config section: `sources` or `destinations`.
    const SECTION: &'static str;
    /// The singular noun, for messages.
    const NOUN: &'static str;
    /// Every `type` this family accepts.
    const KINDS: &'static [&'static str];

    /// Deserialize a component whose `type` is `kind` (one of `KINDS`).
    fn deserialize_kind<'de, D: Deserializer<'de>>(kind: &str, d: D) -> Result<Self, D::Error>;

    /// Each `type`'s settings schema (see `super::schema::tagged`).
    fn kind_schemas(g: &mut schemars::SchemaGenerator) -> Vec<(&'static str, schemars::Schema)>;
}

/// A named component of a config, with its type and position.
#[derive(Debug, Clone)]
pub struct Component<T> {
    pub id: String,
    pub kind: String,
    pub location: Loc,
    pub config: T,
    /// Its settings as they were written (after `${VAR}`), in a canonical
    /// form: a reload compares these to tell a changed component from an
    /// unchanged one, whatever moved around it in the file.
    pub fingerprint: String,
}

thread_local! {
    static KINDS: RefCell<HashMap<(&'static str, String), String>> = RefCell::new(HashMap::new());
}

/// Run `f` with the component types from pass one available to pass two.
pub(crate) fn with_kinds<R>(
    kinds: HashMap<(&'static str, String), String>,
    f: impl FnOnce() -> R,
) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            KINDS.with(|k| k.borrow_mut().clear());
        }
    }
    KINDS.with(|k| *k.borrow_mut() = kinds);
    let _reset = Reset;
    f()
}

fn kind_of(section: &'static str, id: &str) -> Option<String> {
    KINDS.with(|k| k.borrow().get(&(section, id.to_string())).cloned())
}

/// Pass two's view of a section: components in file order.
#[derive(Debug)]
pub(crate) struct ComponentMap<T>(pub Vec<(String, T)>);

impl<T> Default for ComponentMap<T> {
    fn default() -> Self {
        ComponentMap(Vec::new())
    }
}

impl<'de, T: ComponentKind> Deserialize<'de> for ComponentMap<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapVisitor<T>(PhantomData<T>);
        impl<'de, T: ComponentKind> Visitor<'de> for MapVisitor<T> {
            type Value = ComponentMap<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a map of {} ids to their settings", T::NOUN)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(ComponentMap(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(id) = map.next_key::<String>()? {
                    let kind = kind_of(T::SECTION, &id).ok_or_else(|| {
                        de::Error::custom(format!("{} `{id}` has no `type`", T::NOUN))
                    })?;
                    let value = map.next_value_seed(KindSeed::<T> {
                        kind,
                        _t: PhantomData,
                    })?;
                    out.push((id, value));
                }
                Ok(ComponentMap(out))
            }
        }
        d.deserialize_map(MapVisitor::<T>(PhantomData))
    }
}

/// Pass two's view of a section of named lists (`pipelines`): each item's
/// type comes from pass one under the id `name[index]`.
#[derive(Debug)]
pub(crate) struct ListMap<T>(pub Vec<(String, Vec<T>)>);

impl<T> Default for ListMap<T> {
    fn default() -> Self {
        ListMap(Vec::new())
    }
}

/// The id pass one gives item `index` of list `name`.
pub(crate) fn item_id(name: &str, index: usize) -> String {
    format!("{name}[{index}]")
}

impl<'de, T: ComponentKind> Deserialize<'de> for ListMap<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapVisitor<T>(PhantomData<T>);
        impl<'de, T: ComponentKind> Visitor<'de> for MapVisitor<T> {
            type Value = ListMap<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a map of names to lists of {}s", T::NOUN)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(ListMap(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    let items = map.next_value_seed(ListSeed::<T> {
                        name: name.clone(),
                        _t: PhantomData,
                    })?;
                    out.push((name, items));
                }
                Ok(ListMap(out))
            }
        }
        d.deserialize_map(MapVisitor::<T>(PhantomData))
    }
}

struct ListSeed<T> {
    name: String,
    _t: PhantomData<T>,
}

impl<'de, T: ComponentKind> DeserializeSeed<'de> for ListSeed<T> {
    type Value = Vec<T>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<T>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T: ComponentKind> Visitor<'de> for ListSeed<T> {
    type Value = Vec<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a list of {}s", T::NOUN)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        loop {
            let id = item_id(&self.name, out.len());
            // Pass one recorded every item's type: none means the end.
            let Some(kind) = kind_of(T::SECTION, &id) else {
                return match seq.next_element::<de::IgnoredAny>()? {
                    None => Ok(out),
                    Some(_) => Err(de::Error::custom(format!(
                        "{} {} of `{}` has no `type`",
                        T::NOUN,
                        out.len() + 1,
                        self.name
                    ))),
                };
            };
            match seq.next_element_seed(KindSeed::<T> {
                kind,
                _t: PhantomData,
            })? {
                Some(item) => out.push(item),
                None => return Ok(out),
            }
        }
    }
}

struct KindSeed<T> {
    kind: String,
    _t: PhantomData<T>,
}

impl<'de, T: ComponentKind> DeserializeSeed<'de> for KindSeed<T> {
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        T::deserialize_kind(&self.kind, d)
    }
}

/// Pass one: only the `type` of each component, with positions.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct KindIndex {
    #[serde(default)]
    pub sources: Option<std::collections::BTreeMap<String, serde_saphyr::Spanned<KindOnly>>>,
    #[serde(default)]
    pub destinations: Option<std::collections::BTreeMap<String, serde_saphyr::Spanned<KindOnly>>>,
    #[serde(default)]
    #[allow(clippy::type_complexity)]
    pub pipelines:
        Option<std::collections::BTreeMap<String, Option<Vec<serde_saphyr::Spanned<KindOnly>>>>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct KindOnly {
    #[serde(rename = "type")]
    pub kind: serde_saphyr::Spanned<String>,
}
