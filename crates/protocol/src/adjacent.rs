//! Decoding of adjacently tagged enums (`{"<tag>":"<name>","<content>":...}`) with a
//! fallback for names this version does not know.
//!
//! serde's derived decoder for adjacent tagging cannot keep an unknown name, and
//! an untagged fallback variant would also swallow known names with malformed
//! content. So the map is walked here: the name is read first and the content
//! is then decoded straight from the input by serde's derived code for an
//! externally tagged mirror of the enum (`#[serde(remote = ...)]`), which sees
//! the name and content as one enum through [`VariantDeserializer`]. Nothing is
//! buffered unless the content comes before the name, which our encoder never
//! emits.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::StrDeserializer;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IgnoredAny, IntoDeserializer, MapAccess,
    VariantAccess, Visitor,
};

/// An enum encoded as `{"<TAG>":"<name>","<CONTENT>":...}` with an unknown-name fallback.
pub(crate) trait AdjacentlyTagged: Sized {
    /// What one value is called in error messages ("method", "event").
    const WHAT: &'static str;
    /// Key holding the variant name.
    const TAG: &'static str;
    /// Key holding the variant's content; absent for unit variants.
    const CONTENT: &'static str;

    /// Decodes a known variant from a deserializer presenting it as an externally tagged enum.
    fn deserialize_known<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error>;

    /// The fallback for a name that `deserialize_known` does not list.
    fn unknown(name: String) -> Self;
}

/// Deserializes `T` from its adjacently tagged map form.
pub(crate) fn deserialize<'de, T, D>(deserializer: D) -> Result<T, D::Error>
where
    T: AdjacentlyTagged,
    D: Deserializer<'de>,
{
    deserializer.deserialize_map(TaggedVisitor(PhantomData))
}

struct TaggedVisitor<T>(PhantomData<T>);

impl<'de, T: AdjacentlyTagged> Visitor<'de> for TaggedVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} object with a `{}` name", T::WHAT, T::TAG)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut name: Option<Cow<'de, str>> = None;
        let mut decoded: Option<T> = None;
        let mut buffered: Option<serde_json::Value> = None;
        let mut content_seen = false;
        while let Some(key) = map.next_key_seed(KeySeed::<T>(PhantomData))? {
            match key {
                Key::Tag => {
                    if name.is_some() {
                        return Err(de::Error::duplicate_field(T::TAG));
                    }
                    name = Some(map.next_value_seed(NameSeed)?);
                }
                Key::Content => {
                    if content_seen {
                        return Err(de::Error::duplicate_field(T::CONTENT));
                    }
                    content_seen = true;
                    match &name {
                        Some(name) => {
                            decoded = Some(decode::<T, A>(name, Content::Map(&mut map))?);
                        }
                        None => buffered = Some(map.next_value()?),
                    }
                }
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let name = name.ok_or_else(|| de::Error::missing_field(T::TAG))?;
        match decoded {
            Some(value) => Ok(value),
            None => {
                let content = match buffered {
                    Some(value) => Content::Buffered(value),
                    None => Content::Absent,
                };
                decode::<T, A>(&name, content)
            }
        }
    }
}

/// Decodes the variant `name` from `content`, falling back to `T::unknown`.
fn decode<'de, T, A>(name: &str, content: Content<'_, A>) -> Result<T, A::Error>
where
    T: AdjacentlyTagged,
    A: MapAccess<'de>,
{
    let mut unknown = false;
    let result = T::deserialize_known(VariantDeserializer::<T, A> {
        name,
        content,
        unknown: &mut unknown,
        what: PhantomData,
    });
    if unknown {
        Ok(T::unknown(name.to_owned()))
    } else {
        result
    }
}

/// Where a variant's content comes from.
enum Content<'a, A> {
    /// Still in the input: the map's next value.
    Map(&'a mut A),
    /// Read before the name was known.
    Buffered(serde_json::Value),
    /// The object had no content key.
    Absent,
}

impl<'de, A: MapAccess<'de>> Content<'_, A> {
    fn skip(self) -> Result<(), A::Error> {
        if let Content::Map(map) = self {
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    /// Decodes the content with `seed`, naming the variant in any error.
    fn decode<T, S>(self, name: &str, seed: S) -> Result<S::Value, A::Error>
    where
        T: AdjacentlyTagged,
        S: DeserializeSeed<'de>,
    {
        let result = match self {
            Content::Map(map) => map.next_value_seed(seed).map_err(|e| e.to_string()),
            Content::Buffered(value) => seed.deserialize(value).map_err(|e| e.to_string()),
            Content::Absent => {
                return Err(de::Error::custom(format_args!(
                    "missing `{}` for {} `{name}`",
                    T::CONTENT,
                    T::WHAT
                )));
            }
        };
        result.map_err(|message| {
            de::Error::custom(format_args!(
                "invalid `{}` for {} `{name}`: {}",
                T::CONTENT,
                T::WHAT,
                strip_position(&message)
            ))
        })
    }
}

/// Drops serde_json's " at line L column C" suffix; the outer error gets its own.
fn strip_position(message: &str) -> &str {
    let Some(at) = message.rfind(" at line ") else {
        return message;
    };
    let tail = &message[at + " at line ".len()..];
    let mut parts = tail.split(" column ");
    let is_position = matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(line), Some(column), None)
            if !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit())
                && !column.is_empty() && column.bytes().all(|b| b.is_ascii_digit())
    );
    if is_position { &message[..at] } else { message }
}

/// Presents a name and its content as an externally tagged enum to serde's derived code.
struct VariantDeserializer<'a, 'b, T, A> {
    name: &'a str,
    content: Content<'b, A>,
    /// Set when `name` is not one of the enum's variants, so the caller can fall back.
    unknown: &'a mut bool,
    what: PhantomData<T>,
}

impl<'de, T, A> Deserializer<'de> for VariantDeserializer<'_, '_, T, A>
where
    T: AdjacentlyTagged,
    A: MapAccess<'de>,
{
    type Error = A::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, A::Error> {
        Err(de::Error::custom(
            "adjacently tagged content can only decode an enum",
        ))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        if variants.contains(&self.name) {
            visitor.visit_enum(self)
        } else {
            *self.unknown = true;
            self.content.skip()?;
            Err(de::Error::custom("unknown variant"))
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

impl<'a, 'b, 'de, T, A> EnumAccess<'de> for VariantDeserializer<'a, 'b, T, A>
where
    T: AdjacentlyTagged,
    A: MapAccess<'de>,
{
    type Error = A::Error;
    type Variant = VariantContent<'a, 'b, T, A>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), A::Error> {
        let name: StrDeserializer<'_, A::Error> = self.name.into_deserializer();
        let variant = seed.deserialize(name)?;
        Ok((
            variant,
            VariantContent {
                name: self.name,
                content: self.content,
                what: PhantomData,
            },
        ))
    }
}

/// The content half of [`VariantDeserializer`].
struct VariantContent<'a, 'b, T, A> {
    name: &'a str,
    content: Content<'b, A>,
    what: PhantomData<T>,
}

impl<'de, T, A> VariantAccess<'de> for VariantContent<'_, '_, T, A>
where
    T: AdjacentlyTagged,
    A: MapAccess<'de>,
{
    type Error = A::Error;

    /// Content given to a unit variant is ignored, like any unknown field.
    fn unit_variant(self) -> Result<(), A::Error> {
        self.content.skip()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.content.decode::<T, S>(self.name, seed)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.content
            .decode::<T, _>(self.name, Shape::Tuple(len, visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.content
            .decode::<T, _>(self.name, Shape::Struct(fields, visitor))
    }
}

/// Asks the content's deserializer for the shape a variant's visitor expects.
enum Shape<V> {
    Tuple(usize, V),
    Struct(&'static [&'static str], V),
}

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for Shape<V> {
    type Value = V::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        match self {
            Shape::Tuple(len, visitor) => deserializer.deserialize_tuple(len, visitor),
            Shape::Struct(fields, visitor) => deserializer.deserialize_struct("", fields, visitor),
        }
    }
}

/// Which key of the object was read.
enum Key {
    Tag,
    Content,
    Other,
}

struct KeySeed<T>(PhantomData<T>);

impl<'de, T: AdjacentlyTagged> DeserializeSeed<'de> for KeySeed<T> {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl<'de, T: AdjacentlyTagged> Visitor<'de> for KeySeed<T> {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(if key == T::TAG {
            Key::Tag
        } else if key == T::CONTENT {
            Key::Content
        } else {
            Key::Other
        })
    }
}

/// Reads the variant name, borrowing it from the input when it has no escapes.
struct NameSeed;

impl<'de> DeserializeSeed<'de> for NameSeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for NameSeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a name")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use super::strip_position;

    #[test]
    fn strips_only_a_trailing_position() {
        assert_eq!(
            strip_position("missing field `input` at line 1 column 30"),
            "missing field `input`"
        );
        assert_eq!(strip_position("no position here"), "no position here");
        assert_eq!(
            strip_position("bad at line one column 2"),
            "bad at line one column 2"
        );
    }
}
