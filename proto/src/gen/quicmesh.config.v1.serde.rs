impl serde::Serialize for Ack {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.nonce.is_empty() {
            len += 1;
        }
        if !self.error.is_empty() {
            len += 1;
        }
        if self.version != 0 {
            len += 1;
        }
        if self.report_only {
            len += 1;
        }
        if !self.reports.is_empty() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.Ack", len)?;
        if !self.nonce.is_empty() {
            struct_ser.serialize_field("nonce", &self.nonce)?;
        }
        if !self.error.is_empty() {
            struct_ser.serialize_field("error", &self.error)?;
        }
        if self.version != 0 {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("version", ToString::to_string(&self.version).as_str())?;
        }
        if self.report_only {
            struct_ser.serialize_field("reportOnly", &self.report_only)?;
        }
        if !self.reports.is_empty() {
            struct_ser.serialize_field("reports", &self.reports)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for Ack {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "nonce",
            "error",
            "version",
            "report_only",
            "reportOnly",
            "reports",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Nonce,
            Error,
            Version,
            ReportOnly,
            Reports,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "nonce" => Ok(GeneratedField::Nonce),
                            "error" => Ok(GeneratedField::Error),
                            "version" => Ok(GeneratedField::Version),
                            "reportOnly" | "report_only" => Ok(GeneratedField::ReportOnly),
                            "reports" => Ok(GeneratedField::Reports),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = Ack;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.Ack")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<Ack, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut nonce__ = None;
                let mut error__ = None;
                let mut version__ = None;
                let mut report_only__ = None;
                let mut reports__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Nonce => {
                            if nonce__.is_some() {
                                return Err(serde::de::Error::duplicate_field("nonce"));
                            }
                            nonce__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Error => {
                            if error__.is_some() {
                                return Err(serde::de::Error::duplicate_field("error"));
                            }
                            error__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Version => {
                            if version__.is_some() {
                                return Err(serde::de::Error::duplicate_field("version"));
                            }
                            version__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::ReportOnly => {
                            if report_only__.is_some() {
                                return Err(serde::de::Error::duplicate_field("reportOnly"));
                            }
                            report_only__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Reports => {
                            if reports__.is_some() {
                                return Err(serde::de::Error::duplicate_field("reports"));
                            }
                            reports__ = Some(map_.next_value()?);
                        }
                    }
                }
                Ok(Ack {
                    nonce: nonce__.unwrap_or_default(),
                    error: error__.unwrap_or_default(),
                    version: version__.unwrap_or_default(),
                    report_only: report_only__.unwrap_or_default(),
                    reports: reports__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.Ack", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for Authentication {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.name.is_empty() {
            len += 1;
        }
        if !self.namespace.is_empty() {
            len += 1;
        }
        if self.scope != 0 {
            len += 1;
        }
        if !self.targets.is_empty() {
            len += 1;
        }
        if !self.rules.is_empty() {
            len += 1;
        }
        if !self.invalid.is_empty() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.Authentication", len)?;
        if !self.name.is_empty() {
            struct_ser.serialize_field("name", &self.name)?;
        }
        if !self.namespace.is_empty() {
            struct_ser.serialize_field("namespace", &self.namespace)?;
        }
        if self.scope != 0 {
            let v = AuthenticationScope::try_from(self.scope)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.scope)))?;
            struct_ser.serialize_field("scope", &v)?;
        }
        if !self.targets.is_empty() {
            struct_ser.serialize_field("targets", &self.targets)?;
        }
        if !self.rules.is_empty() {
            struct_ser.serialize_field("rules", &self.rules)?;
        }
        if !self.invalid.is_empty() {
            struct_ser.serialize_field("invalid", &self.invalid)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for Authentication {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "name",
            "namespace",
            "scope",
            "targets",
            "rules",
            "invalid",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Name,
            Namespace,
            Scope,
            Targets,
            Rules,
            Invalid,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "name" => Ok(GeneratedField::Name),
                            "namespace" => Ok(GeneratedField::Namespace),
                            "scope" => Ok(GeneratedField::Scope),
                            "targets" => Ok(GeneratedField::Targets),
                            "rules" => Ok(GeneratedField::Rules),
                            "invalid" => Ok(GeneratedField::Invalid),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = Authentication;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.Authentication")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<Authentication, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut name__ = None;
                let mut namespace__ = None;
                let mut scope__ = None;
                let mut targets__ = None;
                let mut rules__ = None;
                let mut invalid__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Name => {
                            if name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("name"));
                            }
                            name__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Namespace => {
                            if namespace__.is_some() {
                                return Err(serde::de::Error::duplicate_field("namespace"));
                            }
                            namespace__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Scope => {
                            if scope__.is_some() {
                                return Err(serde::de::Error::duplicate_field("scope"));
                            }
                            scope__ = Some(map_.next_value::<AuthenticationScope>()? as i32);
                        }
                        GeneratedField::Targets => {
                            if targets__.is_some() {
                                return Err(serde::de::Error::duplicate_field("targets"));
                            }
                            targets__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Rules => {
                            if rules__.is_some() {
                                return Err(serde::de::Error::duplicate_field("rules"));
                            }
                            rules__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Invalid => {
                            if invalid__.is_some() {
                                return Err(serde::de::Error::duplicate_field("invalid"));
                            }
                            invalid__ = Some(map_.next_value()?);
                        }
                    }
                }
                Ok(Authentication {
                    name: name__.unwrap_or_default(),
                    namespace: namespace__.unwrap_or_default(),
                    scope: scope__.unwrap_or_default(),
                    targets: targets__.unwrap_or_default(),
                    rules: rules__.unwrap_or_default(),
                    invalid: invalid__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.Authentication", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for AuthenticationScope {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        let variant = match self {
            Self::Unspecified => "AUTHENTICATION_SCOPE_UNSPECIFIED",
            Self::Mesh => "AUTHENTICATION_SCOPE_MESH",
            Self::Namespace => "AUTHENTICATION_SCOPE_NAMESPACE",
            Self::Targets => "AUTHENTICATION_SCOPE_TARGETS",
        };
        serializer.serialize_str(variant)
    }
}
impl<'de> serde::Deserialize<'de> for AuthenticationScope {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "AUTHENTICATION_SCOPE_UNSPECIFIED",
            "AUTHENTICATION_SCOPE_MESH",
            "AUTHENTICATION_SCOPE_NAMESPACE",
            "AUTHENTICATION_SCOPE_TARGETS",
        ];

        struct GeneratedVisitor;

        impl serde::de::Visitor<'_> for GeneratedVisitor {
            type Value = AuthenticationScope;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(formatter, "expected one of: {:?}", &FIELDS)
            }

            fn visit_i64<E>(self, v: i64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Signed(v), &self)
                    })
            }

            fn visit_u64<E>(self, v: u64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Unsigned(v), &self)
                    })
            }

            fn visit_str<E>(self, value: &str) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                match value {
                    "AUTHENTICATION_SCOPE_UNSPECIFIED" => Ok(AuthenticationScope::Unspecified),
                    "AUTHENTICATION_SCOPE_MESH" => Ok(AuthenticationScope::Mesh),
                    "AUTHENTICATION_SCOPE_NAMESPACE" => Ok(AuthenticationScope::Namespace),
                    "AUTHENTICATION_SCOPE_TARGETS" => Ok(AuthenticationScope::Targets),
                    _ => Err(serde::de::Error::unknown_variant(value, FIELDS)),
                }
            }
        }
        deserializer.deserialize_any(GeneratedVisitor)
    }
}
impl serde::Serialize for AuthenticationTarget {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.kind.is_empty() {
            len += 1;
        }
        if !self.name.is_empty() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.AuthenticationTarget", len)?;
        if !self.kind.is_empty() {
            struct_ser.serialize_field("kind", &self.kind)?;
        }
        if !self.name.is_empty() {
            struct_ser.serialize_field("name", &self.name)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for AuthenticationTarget {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "kind",
            "name",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Kind,
            Name,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "kind" => Ok(GeneratedField::Kind),
                            "name" => Ok(GeneratedField::Name),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = AuthenticationTarget;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.AuthenticationTarget")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<AuthenticationTarget, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut kind__ = None;
                let mut name__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Kind => {
                            if kind__.is_some() {
                                return Err(serde::de::Error::duplicate_field("kind"));
                            }
                            kind__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Name => {
                            if name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("name"));
                            }
                            name__ = Some(map_.next_value()?);
                        }
                    }
                }
                Ok(AuthenticationTarget {
                    kind: kind__.unwrap_or_default(),
                    name: name__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.AuthenticationTarget", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for Authorization {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.name.is_empty() {
            len += 1;
        }
        if !self.namespace.is_empty() {
            len += 1;
        }
        if self.scope != 0 {
            len += 1;
        }
        if self.action != 0 {
            len += 1;
        }
        if !self.rules.is_empty() {
            len += 1;
        }
        if !self.invalid.is_empty() {
            len += 1;
        }
        if !self.warnings.is_empty() {
            len += 1;
        }
        if !self.targets.is_empty() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.Authorization", len)?;
        if !self.name.is_empty() {
            struct_ser.serialize_field("name", &self.name)?;
        }
        if !self.namespace.is_empty() {
            struct_ser.serialize_field("namespace", &self.namespace)?;
        }
        if self.scope != 0 {
            let v = AuthorizationScope::try_from(self.scope)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.scope)))?;
            struct_ser.serialize_field("scope", &v)?;
        }
        if self.action != 0 {
            let v = AuthorizationAction::try_from(self.action)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.action)))?;
            struct_ser.serialize_field("action", &v)?;
        }
        if !self.rules.is_empty() {
            struct_ser.serialize_field("rules", &self.rules)?;
        }
        if !self.invalid.is_empty() {
            struct_ser.serialize_field("invalid", &self.invalid)?;
        }
        if !self.warnings.is_empty() {
            struct_ser.serialize_field("warnings", &self.warnings)?;
        }
        if !self.targets.is_empty() {
            struct_ser.serialize_field("targets", &self.targets)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for Authorization {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "name",
            "namespace",
            "scope",
            "action",
            "rules",
            "invalid",
            "warnings",
            "targets",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Name,
            Namespace,
            Scope,
            Action,
            Rules,
            Invalid,
            Warnings,
            Targets,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "name" => Ok(GeneratedField::Name),
                            "namespace" => Ok(GeneratedField::Namespace),
                            "scope" => Ok(GeneratedField::Scope),
                            "action" => Ok(GeneratedField::Action),
                            "rules" => Ok(GeneratedField::Rules),
                            "invalid" => Ok(GeneratedField::Invalid),
                            "warnings" => Ok(GeneratedField::Warnings),
                            "targets" => Ok(GeneratedField::Targets),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = Authorization;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.Authorization")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<Authorization, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut name__ = None;
                let mut namespace__ = None;
                let mut scope__ = None;
                let mut action__ = None;
                let mut rules__ = None;
                let mut invalid__ = None;
                let mut warnings__ = None;
                let mut targets__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Name => {
                            if name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("name"));
                            }
                            name__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Namespace => {
                            if namespace__.is_some() {
                                return Err(serde::de::Error::duplicate_field("namespace"));
                            }
                            namespace__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Scope => {
                            if scope__.is_some() {
                                return Err(serde::de::Error::duplicate_field("scope"));
                            }
                            scope__ = Some(map_.next_value::<AuthorizationScope>()? as i32);
                        }
                        GeneratedField::Action => {
                            if action__.is_some() {
                                return Err(serde::de::Error::duplicate_field("action"));
                            }
                            action__ = Some(map_.next_value::<AuthorizationAction>()? as i32);
                        }
                        GeneratedField::Rules => {
                            if rules__.is_some() {
                                return Err(serde::de::Error::duplicate_field("rules"));
                            }
                            rules__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Invalid => {
                            if invalid__.is_some() {
                                return Err(serde::de::Error::duplicate_field("invalid"));
                            }
                            invalid__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Warnings => {
                            if warnings__.is_some() {
                                return Err(serde::de::Error::duplicate_field("warnings"));
                            }
                            warnings__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Targets => {
                            if targets__.is_some() {
                                return Err(serde::de::Error::duplicate_field("targets"));
                            }
                            targets__ = Some(map_.next_value()?);
                        }
                    }
                }
                Ok(Authorization {
                    name: name__.unwrap_or_default(),
                    namespace: namespace__.unwrap_or_default(),
                    scope: scope__.unwrap_or_default(),
                    action: action__.unwrap_or_default(),
                    rules: rules__.unwrap_or_default(),
                    invalid: invalid__.unwrap_or_default(),
                    warnings: warnings__.unwrap_or_default(),
                    targets: targets__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.Authorization", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for AuthorizationAction {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        let variant = match self {
            Self::Unspecified => "AUTHORIZATION_ACTION_UNSPECIFIED",
            Self::Allow => "AUTHORIZATION_ACTION_ALLOW",
            Self::Deny => "AUTHORIZATION_ACTION_DENY",
            Self::Audit => "AUTHORIZATION_ACTION_AUDIT",
        };
        serializer.serialize_str(variant)
    }
}
impl<'de> serde::Deserialize<'de> for AuthorizationAction {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "AUTHORIZATION_ACTION_UNSPECIFIED",
            "AUTHORIZATION_ACTION_ALLOW",
            "AUTHORIZATION_ACTION_DENY",
            "AUTHORIZATION_ACTION_AUDIT",
        ];

        struct GeneratedVisitor;

        impl serde::de::Visitor<'_> for GeneratedVisitor {
            type Value = AuthorizationAction;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(formatter, "expected one of: {:?}", &FIELDS)
            }

            fn visit_i64<E>(self, v: i64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Signed(v), &self)
                    })
            }

            fn visit_u64<E>(self, v: u64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Unsigned(v), &self)
                    })
            }

            fn visit_str<E>(self, value: &str) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                match value {
                    "AUTHORIZATION_ACTION_UNSPECIFIED" => Ok(AuthorizationAction::Unspecified),
                    "AUTHORIZATION_ACTION_ALLOW" => Ok(AuthorizationAction::Allow),
                    "AUTHORIZATION_ACTION_DENY" => Ok(AuthorizationAction::Deny),
                    "AUTHORIZATION_ACTION_AUDIT" => Ok(AuthorizationAction::Audit),
                    _ => Err(serde::de::Error::unknown_variant(value, FIELDS)),
                }
            }
        }
        deserializer.deserialize_any(GeneratedVisitor)
    }
}
impl serde::Serialize for AuthorizationCondition {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.key.is_empty() {
            len += 1;
        }
        if !self.values.is_empty() {
            len += 1;
        }
        if !self.not_values.is_empty() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.AuthorizationCondition", len)?;
        if !self.key.is_empty() {
            struct_ser.serialize_field("key", &self.key)?;
        }
        if !self.values.is_empty() {
            struct_ser.serialize_field("values", &self.values)?;
        }
        if !self.not_values.is_empty() {
            struct_ser.serialize_field("notValues", &self.not_values)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for AuthorizationCondition {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "key",
            "values",
            "not_values",
            "notValues",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Key,
            Values,
            NotValues,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "key" => Ok(GeneratedField::Key),
                            "values" => Ok(GeneratedField::Values),
                            "notValues" | "not_values" => Ok(GeneratedField::NotValues),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = AuthorizationCondition;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.AuthorizationCondition")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<AuthorizationCondition, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut key__ = None;
                let mut values__ = None;
                let mut not_values__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Key => {
                            if key__.is_some() {
                                return Err(serde::de::Error::duplicate_field("key"));
                            }
                            key__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Values => {
                            if values__.is_some() {
                                return Err(serde::de::Error::duplicate_field("values"));
                            }
                            values__ = Some(map_.next_value()?);
                        }
                        GeneratedField::NotValues => {
                            if not_values__.is_some() {
                                return Err(serde::de::Error::duplicate_field("notValues"));
                            }
                            not_values__ = Some(map_.next_value()?);
                        }
                    }
                }
                Ok(AuthorizationCondition {
                    key: key__.unwrap_or_default(),
                    values: values__.unwrap_or_default(),
                    not_values: not_values__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.AuthorizationCondition", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for AuthorizationOperation {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.ports.is_empty() {
            len += 1;
        }
        if !self.not_ports.is_empty() {
            len += 1;
        }
        if self.l7 {
            len += 1;
        }
        if !self.methods.is_empty() {
            len += 1;
        }
        if !self.not_methods.is_empty() {
            len += 1;
        }
        if !self.paths.is_empty() {
            len += 1;
        }
        if !self.not_paths.is_empty() {
            len += 1;
        }
        if !self.hosts.is_empty() {
            len += 1;
        }
        if !self.not_hosts.is_empty() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.AuthorizationOperation", len)?;
        if !self.ports.is_empty() {
            struct_ser.serialize_field("ports", &self.ports)?;
        }
        if !self.not_ports.is_empty() {
            struct_ser.serialize_field("notPorts", &self.not_ports)?;
        }
        if self.l7 {
            struct_ser.serialize_field("l7", &self.l7)?;
        }
        if !self.methods.is_empty() {
            struct_ser.serialize_field("methods", &self.methods)?;
        }
        if !self.not_methods.is_empty() {
            struct_ser.serialize_field("notMethods", &self.not_methods)?;
        }
        if !self.paths.is_empty() {
            struct_ser.serialize_field("paths", &self.paths)?;
        }
        if !self.not_paths.is_empty() {
            struct_ser.serialize_field("notPaths", &self.not_paths)?;
        }
        if !self.hosts.is_empty() {
            struct_ser.serialize_field("hosts", &self.hosts)?;
        }
        if !self.not_hosts.is_empty() {
            struct_ser.serialize_field("notHosts", &self.not_hosts)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for AuthorizationOperation {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "ports",
            "not_ports",
            "notPorts",
            "l7",
            "methods",
            "not_methods",
            "notMethods",
            "paths",
            "not_paths",
            "notPaths",
            "hosts",
            "not_hosts",
            "notHosts",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Ports,
            NotPorts,
            L7,
            Methods,
            NotMethods,
            Paths,
            NotPaths,
            Hosts,
            NotHosts,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "ports" => Ok(GeneratedField::Ports),
                            "notPorts" | "not_ports" => Ok(GeneratedField::NotPorts),
                            "l7" => Ok(GeneratedField::L7),
                            "methods" => Ok(GeneratedField::Methods),
                            "notMethods" | "not_methods" => Ok(GeneratedField::NotMethods),
                            "paths" => Ok(GeneratedField::Paths),
                            "notPaths" | "not_paths" => Ok(GeneratedField::NotPaths),
                            "hosts" => Ok(GeneratedField::Hosts),
                            "notHosts" | "not_hosts" => Ok(GeneratedField::NotHosts),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = AuthorizationOperation;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.AuthorizationOperation")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<AuthorizationOperation, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut ports__ = None;
                let mut not_ports__ = None;
                let mut l7__ = None;
                let mut methods__ = None;
                let mut not_methods__ = None;
                let mut paths__ = None;
                let mut not_paths__ = None;
                let mut hosts__ = None;
                let mut not_hosts__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Ports => {
                            if ports__.is_some() {
                                return Err(serde::de::Error::duplicate_field("ports"));
                            }
                            ports__ = 
                                Some(map_.next_value::<Vec<::pbjson::private::NumberDeserialize<_>>>()?
                                    .into_iter().map(|x| x.0).collect())
                            ;
                        }
                        GeneratedField::NotPorts => {
                            if not_ports__.is_some() {
                                return Err(serde::de::Error::duplicate_field("notPorts"));
                            }
                            not_ports__ = 
                                Some(map_.next_value::<Vec<::pbjson::private::NumberDeserialize<_>>>()?
                                    .into_iter().map(|x| x.0).collect())
                            ;
                        }
                        GeneratedField::L7 => {
                            if l7__.is_some() {
                                return Err(serde::de::Error::duplicate_field("l7"));
                            }
                            l7__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Methods => {
                            if methods__.is_some() {
                                return Err(serde::de::Error::duplicate_field("methods"));
                            }
                            methods__ = Some(map_.next_value()?);
                        }
                        GeneratedField::NotMethods => {
                            if not_methods__.is_some() {
                                return Err(serde::de::Error::duplicate_field("notMethods"));
                            }
                            not_methods__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Paths => {
                            if paths__.is_some() {
                                return Err(serde::de::Error::duplicate_field("paths"));
                            }
                            paths__ = Some(map_.next_value()?);
                        }
                        GeneratedField::NotPaths => {
                            if not_paths__.is_some() {
                                return Err(serde::de::Error::duplicate_field("notPaths"));
                            }
                            not_paths__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Hosts => {
                            if hosts__.is_some() {
                                return Err(serde::de::Error::duplicate_field("hosts"));
                            }
                            hosts__ = Some(map_.next_value()?);
                        }
                        GeneratedField::NotHosts => {
                            if not_hosts__.is_some() {
                                return Err(serde::de::Error::duplicate_field("notHosts"));
                            }
                            not_hosts__ = Some(map_.next_value()?);
                        }
                    }
                }
                Ok(AuthorizationOperation {
                    ports: ports__.unwrap_or_default(),
                    not_ports: not_ports__.unwrap_or_default(),
                    l7: l7__.unwrap_or_default(),
                    methods: methods__.unwrap_or_default(),
                    not_methods: not_methods__.unwrap_or_default(),
                    paths: paths__.unwrap_or_default(),
                    not_paths: not_paths__.unwrap_or_default(),
                    hosts: hosts__.unwrap_or_default(),
                    not_hosts: not_hosts__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.AuthorizationOperation", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for AuthorizationRule {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.from.is_empty() {
            len += 1;
        }
        if !self.to.is_empty() {
            len += 1;
        }
        if self.l7 {
            len += 1;
        }
        if !self.when.is_empty() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.AuthorizationRule", len)?;
        if !self.from.is_empty() {
            struct_ser.serialize_field("from", &self.from)?;
        }
        if !self.to.is_empty() {
            struct_ser.serialize_field("to", &self.to)?;
        }
        if self.l7 {
            struct_ser.serialize_field("l7", &self.l7)?;
        }
        if !self.when.is_empty() {
            struct_ser.serialize_field("when", &self.when)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for AuthorizationRule {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "from",
            "to",
            "l7",
            "when",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            From,
            To,
            L7,
            When,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "from" => Ok(GeneratedField::From),
                            "to" => Ok(GeneratedField::To),
                            "l7" => Ok(GeneratedField::L7),
                            "when" => Ok(GeneratedField::When),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = AuthorizationRule;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.AuthorizationRule")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<AuthorizationRule, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut from__ = None;
                let mut to__ = None;
                let mut l7__ = None;
                let mut when__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::From => {
                            if from__.is_some() {
                                return Err(serde::de::Error::duplicate_field("from"));
                            }
                            from__ = Some(map_.next_value()?);
                        }
                        GeneratedField::To => {
                            if to__.is_some() {
                                return Err(serde::de::Error::duplicate_field("to"));
                            }
                            to__ = Some(map_.next_value()?);
                        }
                        GeneratedField::L7 => {
                            if l7__.is_some() {
                                return Err(serde::de::Error::duplicate_field("l7"));
                            }
                            l7__ = Some(map_.next_value()?);
                        }
                        GeneratedField::When => {
                            if when__.is_some() {
                                return Err(serde::de::Error::duplicate_field("when"));
                            }
                            when__ = Some(map_.next_value()?);
                        }
                    }
                }
                Ok(AuthorizationRule {
                    from: from__.unwrap_or_default(),
                    to: to__.unwrap_or_default(),
                    l7: l7__.unwrap_or_default(),
                    when: when__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.AuthorizationRule", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for AuthorizationScope {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        let variant = match self {
            Self::Unspecified => "AUTHORIZATION_SCOPE_UNSPECIFIED",
            Self::Mesh => "AUTHORIZATION_SCOPE_MESH",
            Self::Namespace => "AUTHORIZATION_SCOPE_NAMESPACE",
            Self::Workload => "AUTHORIZATION_SCOPE_WORKLOAD",
            Self::Waypoint => "AUTHORIZATION_SCOPE_WAYPOINT",
        };
        serializer.serialize_str(variant)
    }
}
impl<'de> serde::Deserialize<'de> for AuthorizationScope {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "AUTHORIZATION_SCOPE_UNSPECIFIED",
            "AUTHORIZATION_SCOPE_MESH",
            "AUTHORIZATION_SCOPE_NAMESPACE",
            "AUTHORIZATION_SCOPE_WORKLOAD",
            "AUTHORIZATION_SCOPE_WAYPOINT",
        ];

        struct GeneratedVisitor;

        impl serde::de::Visitor<'_> for GeneratedVisitor {
            type Value = AuthorizationScope;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(formatter, "expected one of: {:?}", &FIELDS)
            }

            fn visit_i64<E>(self, v: i64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Signed(v), &self)
                    })
            }

            fn visit_u64<E>(self, v: u64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Unsigned(v), &self)
                    })
            }

            fn visit_str<E>(self, value: &str) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                match value {
                    "AUTHORIZATION_SCOPE_UNSPECIFIED" => Ok(AuthorizationScope::Unspecified),
                    "AUTHORIZATION_SCOPE_MESH" => Ok(AuthorizationScope::Mesh),
                    "AUTHORIZATION_SCOPE_NAMESPACE" => Ok(AuthorizationScope::Namespace),
                    "AUTHORIZATION_SCOPE_WORKLOAD" => Ok(AuthorizationScope::Workload),
                    "AUTHORIZATION_SCOPE_WAYPOINT" => Ok(AuthorizationScope::Waypoint),
                    _ => Err(serde::de::Error::unknown_variant(value, FIELDS)),
                }
            }
        }
        deserializer.deserialize_any(GeneratedVisitor)
    }
}
impl serde::Serialize for AuthorizationSource {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.principals.is_empty() {
            len += 1;
        }
        if !self.not_principals.is_empty() {
            len += 1;
        }
        if !self.namespaces.is_empty() {
            len += 1;
        }
        if !self.not_namespaces.is_empty() {
            len += 1;
        }
        if !self.ip_blocks.is_empty() {
            len += 1;
        }
        if !self.not_ip_blocks.is_empty() {
            len += 1;
        }
        if self.l7 {
            len += 1;
        }
        if self.via_waypoint.is_some() {
            len += 1;
        }
        if !self.request_principals.is_empty() {
            len += 1;
        }
        if !self.not_request_principals.is_empty() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.AuthorizationSource", len)?;
        if !self.principals.is_empty() {
            struct_ser.serialize_field("principals", &self.principals)?;
        }
        if !self.not_principals.is_empty() {
            struct_ser.serialize_field("notPrincipals", &self.not_principals)?;
        }
        if !self.namespaces.is_empty() {
            struct_ser.serialize_field("namespaces", &self.namespaces)?;
        }
        if !self.not_namespaces.is_empty() {
            struct_ser.serialize_field("notNamespaces", &self.not_namespaces)?;
        }
        if !self.ip_blocks.is_empty() {
            struct_ser.serialize_field("ipBlocks", &self.ip_blocks)?;
        }
        if !self.not_ip_blocks.is_empty() {
            struct_ser.serialize_field("notIpBlocks", &self.not_ip_blocks)?;
        }
        if self.l7 {
            struct_ser.serialize_field("l7", &self.l7)?;
        }
        if let Some(v) = self.via_waypoint.as_ref() {
            struct_ser.serialize_field("viaWaypoint", v)?;
        }
        if !self.request_principals.is_empty() {
            struct_ser.serialize_field("requestPrincipals", &self.request_principals)?;
        }
        if !self.not_request_principals.is_empty() {
            struct_ser.serialize_field("notRequestPrincipals", &self.not_request_principals)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for AuthorizationSource {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "principals",
            "not_principals",
            "notPrincipals",
            "namespaces",
            "not_namespaces",
            "notNamespaces",
            "ip_blocks",
            "ipBlocks",
            "not_ip_blocks",
            "notIpBlocks",
            "l7",
            "via_waypoint",
            "viaWaypoint",
            "request_principals",
            "requestPrincipals",
            "not_request_principals",
            "notRequestPrincipals",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Principals,
            NotPrincipals,
            Namespaces,
            NotNamespaces,
            IpBlocks,
            NotIpBlocks,
            L7,
            ViaWaypoint,
            RequestPrincipals,
            NotRequestPrincipals,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "principals" => Ok(GeneratedField::Principals),
                            "notPrincipals" | "not_principals" => Ok(GeneratedField::NotPrincipals),
                            "namespaces" => Ok(GeneratedField::Namespaces),
                            "notNamespaces" | "not_namespaces" => Ok(GeneratedField::NotNamespaces),
                            "ipBlocks" | "ip_blocks" => Ok(GeneratedField::IpBlocks),
                            "notIpBlocks" | "not_ip_blocks" => Ok(GeneratedField::NotIpBlocks),
                            "l7" => Ok(GeneratedField::L7),
                            "viaWaypoint" | "via_waypoint" => Ok(GeneratedField::ViaWaypoint),
                            "requestPrincipals" | "request_principals" => Ok(GeneratedField::RequestPrincipals),
                            "notRequestPrincipals" | "not_request_principals" => Ok(GeneratedField::NotRequestPrincipals),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = AuthorizationSource;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.AuthorizationSource")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<AuthorizationSource, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut principals__ = None;
                let mut not_principals__ = None;
                let mut namespaces__ = None;
                let mut not_namespaces__ = None;
                let mut ip_blocks__ = None;
                let mut not_ip_blocks__ = None;
                let mut l7__ = None;
                let mut via_waypoint__ = None;
                let mut request_principals__ = None;
                let mut not_request_principals__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Principals => {
                            if principals__.is_some() {
                                return Err(serde::de::Error::duplicate_field("principals"));
                            }
                            principals__ = Some(map_.next_value()?);
                        }
                        GeneratedField::NotPrincipals => {
                            if not_principals__.is_some() {
                                return Err(serde::de::Error::duplicate_field("notPrincipals"));
                            }
                            not_principals__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Namespaces => {
                            if namespaces__.is_some() {
                                return Err(serde::de::Error::duplicate_field("namespaces"));
                            }
                            namespaces__ = Some(map_.next_value()?);
                        }
                        GeneratedField::NotNamespaces => {
                            if not_namespaces__.is_some() {
                                return Err(serde::de::Error::duplicate_field("notNamespaces"));
                            }
                            not_namespaces__ = Some(map_.next_value()?);
                        }
                        GeneratedField::IpBlocks => {
                            if ip_blocks__.is_some() {
                                return Err(serde::de::Error::duplicate_field("ipBlocks"));
                            }
                            ip_blocks__ = Some(map_.next_value()?);
                        }
                        GeneratedField::NotIpBlocks => {
                            if not_ip_blocks__.is_some() {
                                return Err(serde::de::Error::duplicate_field("notIpBlocks"));
                            }
                            not_ip_blocks__ = Some(map_.next_value()?);
                        }
                        GeneratedField::L7 => {
                            if l7__.is_some() {
                                return Err(serde::de::Error::duplicate_field("l7"));
                            }
                            l7__ = Some(map_.next_value()?);
                        }
                        GeneratedField::ViaWaypoint => {
                            if via_waypoint__.is_some() {
                                return Err(serde::de::Error::duplicate_field("viaWaypoint"));
                            }
                            via_waypoint__ = map_.next_value()?;
                        }
                        GeneratedField::RequestPrincipals => {
                            if request_principals__.is_some() {
                                return Err(serde::de::Error::duplicate_field("requestPrincipals"));
                            }
                            request_principals__ = Some(map_.next_value()?);
                        }
                        GeneratedField::NotRequestPrincipals => {
                            if not_request_principals__.is_some() {
                                return Err(serde::de::Error::duplicate_field("notRequestPrincipals"));
                            }
                            not_request_principals__ = Some(map_.next_value()?);
                        }
                    }
                }
                Ok(AuthorizationSource {
                    principals: principals__.unwrap_or_default(),
                    not_principals: not_principals__.unwrap_or_default(),
                    namespaces: namespaces__.unwrap_or_default(),
                    not_namespaces: not_namespaces__.unwrap_or_default(),
                    ip_blocks: ip_blocks__.unwrap_or_default(),
                    not_ip_blocks: not_ip_blocks__.unwrap_or_default(),
                    l7: l7__.unwrap_or_default(),
                    via_waypoint: via_waypoint__,
                    request_principals: request_principals__.unwrap_or_default(),
                    not_request_principals: not_request_principals__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.AuthorizationSource", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for AuthorizationTarget {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.kind.is_empty() {
            len += 1;
        }
        if !self.name.is_empty() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.AuthorizationTarget", len)?;
        if !self.kind.is_empty() {
            struct_ser.serialize_field("kind", &self.kind)?;
        }
        if !self.name.is_empty() {
            struct_ser.serialize_field("name", &self.name)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for AuthorizationTarget {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "kind",
            "name",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Kind,
            Name,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "kind" => Ok(GeneratedField::Kind),
                            "name" => Ok(GeneratedField::Name),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = AuthorizationTarget;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.AuthorizationTarget")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<AuthorizationTarget, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut kind__ = None;
                let mut name__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Kind => {
                            if kind__.is_some() {
                                return Err(serde::de::Error::duplicate_field("kind"));
                            }
                            kind__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Name => {
                            if name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("name"));
                            }
                            name__ = Some(map_.next_value()?);
                        }
                    }
                }
                Ok(AuthorizationTarget {
                    kind: kind__.unwrap_or_default(),
                    name: name__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.AuthorizationTarget", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for BackendRef {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.namespace.is_empty() {
            len += 1;
        }
        if !self.name.is_empty() {
            len += 1;
        }
        if self.port != 0 {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.BackendRef", len)?;
        if !self.namespace.is_empty() {
            struct_ser.serialize_field("namespace", &self.namespace)?;
        }
        if !self.name.is_empty() {
            struct_ser.serialize_field("name", &self.name)?;
        }
        if self.port != 0 {
            struct_ser.serialize_field("port", &self.port)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for BackendRef {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "namespace",
            "name",
            "port",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Namespace,
            Name,
            Port,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "namespace" => Ok(GeneratedField::Namespace),
                            "name" => Ok(GeneratedField::Name),
                            "port" => Ok(GeneratedField::Port),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = BackendRef;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.BackendRef")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<BackendRef, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut namespace__ = None;
                let mut name__ = None;
                let mut port__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Namespace => {
                            if namespace__.is_some() {
                                return Err(serde::de::Error::duplicate_field("namespace"));
                            }
                            namespace__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Name => {
                            if name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("name"));
                            }
                            name__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Port => {
                            if port__.is_some() {
                                return Err(serde::de::Error::duplicate_field("port"));
                            }
                            port__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                    }
                }
                Ok(BackendRef {
                    namespace: namespace__.unwrap_or_default(),
                    name: name__.unwrap_or_default(),
                    port: port__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.BackendRef", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ClaimToHeader {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.header.is_empty() {
            len += 1;
        }
        if !self.claim.is_empty() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.ClaimToHeader", len)?;
        if !self.header.is_empty() {
            struct_ser.serialize_field("header", &self.header)?;
        }
        if !self.claim.is_empty() {
            struct_ser.serialize_field("claim", &self.claim)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ClaimToHeader {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "header",
            "claim",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Header,
            Claim,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "header" => Ok(GeneratedField::Header),
                            "claim" => Ok(GeneratedField::Claim),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ClaimToHeader;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.ClaimToHeader")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ClaimToHeader, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut header__ = None;
                let mut claim__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Header => {
                            if header__.is_some() {
                                return Err(serde::de::Error::duplicate_field("header"));
                            }
                            header__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Claim => {
                            if claim__.is_some() {
                                return Err(serde::de::Error::duplicate_field("claim"));
                            }
                            claim__ = Some(map_.next_value()?);
                        }
                    }
                }
                Ok(ClaimToHeader {
                    header: header__.unwrap_or_default(),
                    claim: claim__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.ClaimToHeader", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ConnectionPool {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if self.max_connections != 0 {
            len += 1;
        }
        if self.max_pending_requests != 0 {
            len += 1;
        }
        if self.max_requests_per_connection != 0 {
            len += 1;
        }
        if self.max_concurrent_requests != 0 {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.ConnectionPool", len)?;
        if self.max_connections != 0 {
            struct_ser.serialize_field("maxConnections", &self.max_connections)?;
        }
        if self.max_pending_requests != 0 {
            struct_ser.serialize_field("maxPendingRequests", &self.max_pending_requests)?;
        }
        if self.max_requests_per_connection != 0 {
            struct_ser.serialize_field("maxRequestsPerConnection", &self.max_requests_per_connection)?;
        }
        if self.max_concurrent_requests != 0 {
            struct_ser.serialize_field("maxConcurrentRequests", &self.max_concurrent_requests)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ConnectionPool {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "max_connections",
            "maxConnections",
            "max_pending_requests",
            "maxPendingRequests",
            "max_requests_per_connection",
            "maxRequestsPerConnection",
            "max_concurrent_requests",
            "maxConcurrentRequests",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            MaxConnections,
            MaxPendingRequests,
            MaxRequestsPerConnection,
            MaxConcurrentRequests,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "maxConnections" | "max_connections" => Ok(GeneratedField::MaxConnections),
                            "maxPendingRequests" | "max_pending_requests" => Ok(GeneratedField::MaxPendingRequests),
                            "maxRequestsPerConnection" | "max_requests_per_connection" => Ok(GeneratedField::MaxRequestsPerConnection),
                            "maxConcurrentRequests" | "max_concurrent_requests" => Ok(GeneratedField::MaxConcurrentRequests),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ConnectionPool;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.ConnectionPool")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ConnectionPool, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut max_connections__ = None;
                let mut max_pending_requests__ = None;
                let mut max_requests_per_connection__ = None;
                let mut max_concurrent_requests__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::MaxConnections => {
                            if max_connections__.is_some() {
                                return Err(serde::de::Error::duplicate_field("maxConnections"));
                            }
                            max_connections__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::MaxPendingRequests => {
                            if max_pending_requests__.is_some() {
                                return Err(serde::de::Error::duplicate_field("maxPendingRequests"));
                            }
                            max_pending_requests__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::MaxRequestsPerConnection => {
                            if max_requests_per_connection__.is_some() {
                                return Err(serde::de::Error::duplicate_field("maxRequestsPerConnection"));
                            }
                            max_requests_per_connection__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::MaxConcurrentRequests => {
                            if max_concurrent_requests__.is_some() {
                                return Err(serde::de::Error::duplicate_field("maxConcurrentRequests"));
                            }
                            max_concurrent_requests__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                    }
                }
                Ok(ConnectionPool {
                    max_connections: max_connections__.unwrap_or_default(),
                    max_pending_requests: max_pending_requests__.unwrap_or_default(),
                    max_requests_per_connection: max_requests_per_connection__.unwrap_or_default(),
                    max_concurrent_requests: max_concurrent_requests__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.ConnectionPool", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for Endpoint {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.workload_uid.is_empty() {
            len += 1;
        }
        if !self.ip.is_empty() {
            len += 1;
        }
        if self.ready {
            len += 1;
        }
        if !self.ports.is_empty() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.Endpoint", len)?;
        if !self.workload_uid.is_empty() {
            struct_ser.serialize_field("workloadUid", &self.workload_uid)?;
        }
        if !self.ip.is_empty() {
            struct_ser.serialize_field("ip", &self.ip)?;
        }
        if self.ready {
            struct_ser.serialize_field("ready", &self.ready)?;
        }
        if !self.ports.is_empty() {
            struct_ser.serialize_field("ports", &self.ports)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for Endpoint {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "workload_uid",
            "workloadUid",
            "ip",
            "ready",
            "ports",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            WorkloadUid,
            Ip,
            Ready,
            Ports,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "workloadUid" | "workload_uid" => Ok(GeneratedField::WorkloadUid),
                            "ip" => Ok(GeneratedField::Ip),
                            "ready" => Ok(GeneratedField::Ready),
                            "ports" => Ok(GeneratedField::Ports),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = Endpoint;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.Endpoint")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<Endpoint, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut workload_uid__ = None;
                let mut ip__ = None;
                let mut ready__ = None;
                let mut ports__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::WorkloadUid => {
                            if workload_uid__.is_some() {
                                return Err(serde::de::Error::duplicate_field("workloadUid"));
                            }
                            workload_uid__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Ip => {
                            if ip__.is_some() {
                                return Err(serde::de::Error::duplicate_field("ip"));
                            }
                            ip__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Ready => {
                            if ready__.is_some() {
                                return Err(serde::de::Error::duplicate_field("ready"));
                            }
                            ready__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Ports => {
                            if ports__.is_some() {
                                return Err(serde::de::Error::duplicate_field("ports"));
                            }
                            ports__ = Some(
                                map_.next_value::<std::collections::HashMap<_, ::pbjson::private::NumberDeserialize<u32>>>()?
                                    .into_iter().map(|(k,v)| (k, v.0)).collect()
                            );
                        }
                    }
                }
                Ok(Endpoint {
                    workload_uid: workload_uid__.unwrap_or_default(),
                    ip: ip__.unwrap_or_default(),
                    ready: ready__.unwrap_or_default(),
                    ports: ports__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.Endpoint", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for FaultAbort {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if self.per_million != 0 {
            len += 1;
        }
        if self.http_status != 0 {
            len += 1;
        }
        if self.grpc_status != 0 {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.FaultAbort", len)?;
        if self.per_million != 0 {
            struct_ser.serialize_field("perMillion", &self.per_million)?;
        }
        if self.http_status != 0 {
            struct_ser.serialize_field("httpStatus", &self.http_status)?;
        }
        if self.grpc_status != 0 {
            struct_ser.serialize_field("grpcStatus", &self.grpc_status)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for FaultAbort {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "per_million",
            "perMillion",
            "http_status",
            "httpStatus",
            "grpc_status",
            "grpcStatus",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            PerMillion,
            HttpStatus,
            GrpcStatus,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "perMillion" | "per_million" => Ok(GeneratedField::PerMillion),
                            "httpStatus" | "http_status" => Ok(GeneratedField::HttpStatus),
                            "grpcStatus" | "grpc_status" => Ok(GeneratedField::GrpcStatus),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = FaultAbort;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.FaultAbort")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<FaultAbort, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut per_million__ = None;
                let mut http_status__ = None;
                let mut grpc_status__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::PerMillion => {
                            if per_million__.is_some() {
                                return Err(serde::de::Error::duplicate_field("perMillion"));
                            }
                            per_million__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::HttpStatus => {
                            if http_status__.is_some() {
                                return Err(serde::de::Error::duplicate_field("httpStatus"));
                            }
                            http_status__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::GrpcStatus => {
                            if grpc_status__.is_some() {
                                return Err(serde::de::Error::duplicate_field("grpcStatus"));
                            }
                            grpc_status__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                    }
                }
                Ok(FaultAbort {
                    per_million: per_million__.unwrap_or_default(),
                    http_status: http_status__.unwrap_or_default(),
                    grpc_status: grpc_status__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.FaultAbort", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for FaultDelay {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if self.per_million != 0 {
            len += 1;
        }
        if self.fixed_delay_ms != 0 {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.FaultDelay", len)?;
        if self.per_million != 0 {
            struct_ser.serialize_field("perMillion", &self.per_million)?;
        }
        if self.fixed_delay_ms != 0 {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("fixedDelayMs", ToString::to_string(&self.fixed_delay_ms).as_str())?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for FaultDelay {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "per_million",
            "perMillion",
            "fixed_delay_ms",
            "fixedDelayMs",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            PerMillion,
            FixedDelayMs,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "perMillion" | "per_million" => Ok(GeneratedField::PerMillion),
                            "fixedDelayMs" | "fixed_delay_ms" => Ok(GeneratedField::FixedDelayMs),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = FaultDelay;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.FaultDelay")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<FaultDelay, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut per_million__ = None;
                let mut fixed_delay_ms__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::PerMillion => {
                            if per_million__.is_some() {
                                return Err(serde::de::Error::duplicate_field("perMillion"));
                            }
                            per_million__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::FixedDelayMs => {
                            if fixed_delay_ms__.is_some() {
                                return Err(serde::de::Error::duplicate_field("fixedDelayMs"));
                            }
                            fixed_delay_ms__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                    }
                }
                Ok(FaultDelay {
                    per_million: per_million__.unwrap_or_default(),
                    fixed_delay_ms: fixed_delay_ms__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.FaultDelay", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for FaultHeader {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.name.is_empty() {
            len += 1;
        }
        if !self.value.is_empty() {
            len += 1;
        }
        if self.present_only {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.FaultHeader", len)?;
        if !self.name.is_empty() {
            struct_ser.serialize_field("name", &self.name)?;
        }
        if !self.value.is_empty() {
            struct_ser.serialize_field("value", &self.value)?;
        }
        if self.present_only {
            struct_ser.serialize_field("presentOnly", &self.present_only)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for FaultHeader {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "name",
            "value",
            "present_only",
            "presentOnly",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Name,
            Value,
            PresentOnly,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "name" => Ok(GeneratedField::Name),
                            "value" => Ok(GeneratedField::Value),
                            "presentOnly" | "present_only" => Ok(GeneratedField::PresentOnly),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = FaultHeader;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.FaultHeader")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<FaultHeader, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut name__ = None;
                let mut value__ = None;
                let mut present_only__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Name => {
                            if name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("name"));
                            }
                            name__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Value => {
                            if value__.is_some() {
                                return Err(serde::de::Error::duplicate_field("value"));
                            }
                            value__ = Some(map_.next_value()?);
                        }
                        GeneratedField::PresentOnly => {
                            if present_only__.is_some() {
                                return Err(serde::de::Error::duplicate_field("presentOnly"));
                            }
                            present_only__ = Some(map_.next_value()?);
                        }
                    }
                }
                Ok(FaultHeader {
                    name: name__.unwrap_or_default(),
                    value: value__.unwrap_or_default(),
                    present_only: present_only__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.FaultHeader", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for FaultInjection {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if self.delay.is_some() {
            len += 1;
        }
        if self.abort.is_some() {
            len += 1;
        }
        if !self.headers.is_empty() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.FaultInjection", len)?;
        if let Some(v) = self.delay.as_ref() {
            struct_ser.serialize_field("delay", v)?;
        }
        if let Some(v) = self.abort.as_ref() {
            struct_ser.serialize_field("abort", v)?;
        }
        if !self.headers.is_empty() {
            struct_ser.serialize_field("headers", &self.headers)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for FaultInjection {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "delay",
            "abort",
            "headers",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Delay,
            Abort,
            Headers,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "delay" => Ok(GeneratedField::Delay),
                            "abort" => Ok(GeneratedField::Abort),
                            "headers" => Ok(GeneratedField::Headers),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = FaultInjection;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.FaultInjection")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<FaultInjection, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut delay__ = None;
                let mut abort__ = None;
                let mut headers__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Delay => {
                            if delay__.is_some() {
                                return Err(serde::de::Error::duplicate_field("delay"));
                            }
                            delay__ = map_.next_value()?;
                        }
                        GeneratedField::Abort => {
                            if abort__.is_some() {
                                return Err(serde::de::Error::duplicate_field("abort"));
                            }
                            abort__ = map_.next_value()?;
                        }
                        GeneratedField::Headers => {
                            if headers__.is_some() {
                                return Err(serde::de::Error::duplicate_field("headers"));
                            }
                            headers__ = Some(map_.next_value()?);
                        }
                    }
                }
                Ok(FaultInjection {
                    delay: delay__,
                    abort: abort__,
                    headers: headers__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.FaultInjection", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for Header {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.name.is_empty() {
            len += 1;
        }
        if !self.value.is_empty() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.Header", len)?;
        if !self.name.is_empty() {
            struct_ser.serialize_field("name", &self.name)?;
        }
        if !self.value.is_empty() {
            struct_ser.serialize_field("value", &self.value)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for Header {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "name",
            "value",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Name,
            Value,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "name" => Ok(GeneratedField::Name),
                            "value" => Ok(GeneratedField::Value),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = Header;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.Header")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<Header, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut name__ = None;
                let mut value__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Name => {
                            if name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("name"));
                            }
                            name__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Value => {
                            if value__.is_some() {
                                return Err(serde::de::Error::duplicate_field("value"));
                            }
                            value__ = Some(map_.next_value()?);
                        }
                    }
                }
                Ok(Header {
                    name: name__.unwrap_or_default(),
                    value: value__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.Header", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for HeaderModifier {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.set.is_empty() {
            len += 1;
        }
        if !self.add.is_empty() {
            len += 1;
        }
        if !self.remove.is_empty() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.HeaderModifier", len)?;
        if !self.set.is_empty() {
            struct_ser.serialize_field("set", &self.set)?;
        }
        if !self.add.is_empty() {
            struct_ser.serialize_field("add", &self.add)?;
        }
        if !self.remove.is_empty() {
            struct_ser.serialize_field("remove", &self.remove)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for HeaderModifier {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "set",
            "add",
            "remove",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Set,
            Add,
            Remove,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "set" => Ok(GeneratedField::Set),
                            "add" => Ok(GeneratedField::Add),
                            "remove" => Ok(GeneratedField::Remove),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = HeaderModifier;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.HeaderModifier")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<HeaderModifier, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut set__ = None;
                let mut add__ = None;
                let mut remove__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Set => {
                            if set__.is_some() {
                                return Err(serde::de::Error::duplicate_field("set"));
                            }
                            set__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Add => {
                            if add__.is_some() {
                                return Err(serde::de::Error::duplicate_field("add"));
                            }
                            add__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Remove => {
                            if remove__.is_some() {
                                return Err(serde::de::Error::duplicate_field("remove"));
                            }
                            remove__ = Some(map_.next_value()?);
                        }
                    }
                }
                Ok(HeaderModifier {
                    set: set__.unwrap_or_default(),
                    add: add__.unwrap_or_default(),
                    remove: remove__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.HeaderModifier", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for HttpRoute {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.namespace.is_empty() {
            len += 1;
        }
        if !self.name.is_empty() {
            len += 1;
        }
        if self.created != 0 {
            len += 1;
        }
        if !self.parents.is_empty() {
            len += 1;
        }
        if !self.rules.is_empty() {
            len += 1;
        }
        if self.grpc {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.HttpRoute", len)?;
        if !self.namespace.is_empty() {
            struct_ser.serialize_field("namespace", &self.namespace)?;
        }
        if !self.name.is_empty() {
            struct_ser.serialize_field("name", &self.name)?;
        }
        if self.created != 0 {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("created", ToString::to_string(&self.created).as_str())?;
        }
        if !self.parents.is_empty() {
            struct_ser.serialize_field("parents", &self.parents)?;
        }
        if !self.rules.is_empty() {
            struct_ser.serialize_field("rules", &self.rules)?;
        }
        if self.grpc {
            struct_ser.serialize_field("grpc", &self.grpc)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for HttpRoute {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "namespace",
            "name",
            "created",
            "parents",
            "rules",
            "grpc",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Namespace,
            Name,
            Created,
            Parents,
            Rules,
            Grpc,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "namespace" => Ok(GeneratedField::Namespace),
                            "name" => Ok(GeneratedField::Name),
                            "created" => Ok(GeneratedField::Created),
                            "parents" => Ok(GeneratedField::Parents),
                            "rules" => Ok(GeneratedField::Rules),
                            "grpc" => Ok(GeneratedField::Grpc),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = HttpRoute;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.HttpRoute")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<HttpRoute, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut namespace__ = None;
                let mut name__ = None;
                let mut created__ = None;
                let mut parents__ = None;
                let mut rules__ = None;
                let mut grpc__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Namespace => {
                            if namespace__.is_some() {
                                return Err(serde::de::Error::duplicate_field("namespace"));
                            }
                            namespace__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Name => {
                            if name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("name"));
                            }
                            name__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Created => {
                            if created__.is_some() {
                                return Err(serde::de::Error::duplicate_field("created"));
                            }
                            created__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::Parents => {
                            if parents__.is_some() {
                                return Err(serde::de::Error::duplicate_field("parents"));
                            }
                            parents__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Rules => {
                            if rules__.is_some() {
                                return Err(serde::de::Error::duplicate_field("rules"));
                            }
                            rules__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Grpc => {
                            if grpc__.is_some() {
                                return Err(serde::de::Error::duplicate_field("grpc"));
                            }
                            grpc__ = Some(map_.next_value()?);
                        }
                    }
                }
                Ok(HttpRoute {
                    namespace: namespace__.unwrap_or_default(),
                    name: name__.unwrap_or_default(),
                    created: created__.unwrap_or_default(),
                    parents: parents__.unwrap_or_default(),
                    rules: rules__.unwrap_or_default(),
                    grpc: grpc__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.HttpRoute", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for JwtHeader {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.name.is_empty() {
            len += 1;
        }
        if !self.prefix.is_empty() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.JwtHeader", len)?;
        if !self.name.is_empty() {
            struct_ser.serialize_field("name", &self.name)?;
        }
        if !self.prefix.is_empty() {
            struct_ser.serialize_field("prefix", &self.prefix)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for JwtHeader {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "name",
            "prefix",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Name,
            Prefix,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "name" => Ok(GeneratedField::Name),
                            "prefix" => Ok(GeneratedField::Prefix),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = JwtHeader;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.JwtHeader")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<JwtHeader, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut name__ = None;
                let mut prefix__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Name => {
                            if name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("name"));
                            }
                            name__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Prefix => {
                            if prefix__.is_some() {
                                return Err(serde::de::Error::duplicate_field("prefix"));
                            }
                            prefix__ = Some(map_.next_value()?);
                        }
                    }
                }
                Ok(JwtHeader {
                    name: name__.unwrap_or_default(),
                    prefix: prefix__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.JwtHeader", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for JwtRule {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.issuer.is_empty() {
            len += 1;
        }
        if !self.audiences.is_empty() {
            len += 1;
        }
        if !self.jwks.is_empty() {
            len += 1;
        }
        if !self.jwks_uri.is_empty() {
            len += 1;
        }
        if self.jwks_refresh_seconds != 0 {
            len += 1;
        }
        if !self.from_headers.is_empty() {
            len += 1;
        }
        if !self.from_params.is_empty() {
            len += 1;
        }
        if !self.output_claim_to_headers.is_empty() {
            len += 1;
        }
        if self.forward_original_token {
            len += 1;
        }
        if self.clock_skew_seconds != 0 {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.JwtRule", len)?;
        if !self.issuer.is_empty() {
            struct_ser.serialize_field("issuer", &self.issuer)?;
        }
        if !self.audiences.is_empty() {
            struct_ser.serialize_field("audiences", &self.audiences)?;
        }
        if !self.jwks.is_empty() {
            struct_ser.serialize_field("jwks", &self.jwks)?;
        }
        if !self.jwks_uri.is_empty() {
            struct_ser.serialize_field("jwksUri", &self.jwks_uri)?;
        }
        if self.jwks_refresh_seconds != 0 {
            struct_ser.serialize_field("jwksRefreshSeconds", &self.jwks_refresh_seconds)?;
        }
        if !self.from_headers.is_empty() {
            struct_ser.serialize_field("fromHeaders", &self.from_headers)?;
        }
        if !self.from_params.is_empty() {
            struct_ser.serialize_field("fromParams", &self.from_params)?;
        }
        if !self.output_claim_to_headers.is_empty() {
            struct_ser.serialize_field("outputClaimToHeaders", &self.output_claim_to_headers)?;
        }
        if self.forward_original_token {
            struct_ser.serialize_field("forwardOriginalToken", &self.forward_original_token)?;
        }
        if self.clock_skew_seconds != 0 {
            struct_ser.serialize_field("clockSkewSeconds", &self.clock_skew_seconds)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for JwtRule {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "issuer",
            "audiences",
            "jwks",
            "jwks_uri",
            "jwksUri",
            "jwks_refresh_seconds",
            "jwksRefreshSeconds",
            "from_headers",
            "fromHeaders",
            "from_params",
            "fromParams",
            "output_claim_to_headers",
            "outputClaimToHeaders",
            "forward_original_token",
            "forwardOriginalToken",
            "clock_skew_seconds",
            "clockSkewSeconds",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Issuer,
            Audiences,
            Jwks,
            JwksUri,
            JwksRefreshSeconds,
            FromHeaders,
            FromParams,
            OutputClaimToHeaders,
            ForwardOriginalToken,
            ClockSkewSeconds,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "issuer" => Ok(GeneratedField::Issuer),
                            "audiences" => Ok(GeneratedField::Audiences),
                            "jwks" => Ok(GeneratedField::Jwks),
                            "jwksUri" | "jwks_uri" => Ok(GeneratedField::JwksUri),
                            "jwksRefreshSeconds" | "jwks_refresh_seconds" => Ok(GeneratedField::JwksRefreshSeconds),
                            "fromHeaders" | "from_headers" => Ok(GeneratedField::FromHeaders),
                            "fromParams" | "from_params" => Ok(GeneratedField::FromParams),
                            "outputClaimToHeaders" | "output_claim_to_headers" => Ok(GeneratedField::OutputClaimToHeaders),
                            "forwardOriginalToken" | "forward_original_token" => Ok(GeneratedField::ForwardOriginalToken),
                            "clockSkewSeconds" | "clock_skew_seconds" => Ok(GeneratedField::ClockSkewSeconds),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = JwtRule;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.JwtRule")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<JwtRule, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut issuer__ = None;
                let mut audiences__ = None;
                let mut jwks__ = None;
                let mut jwks_uri__ = None;
                let mut jwks_refresh_seconds__ = None;
                let mut from_headers__ = None;
                let mut from_params__ = None;
                let mut output_claim_to_headers__ = None;
                let mut forward_original_token__ = None;
                let mut clock_skew_seconds__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Issuer => {
                            if issuer__.is_some() {
                                return Err(serde::de::Error::duplicate_field("issuer"));
                            }
                            issuer__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Audiences => {
                            if audiences__.is_some() {
                                return Err(serde::de::Error::duplicate_field("audiences"));
                            }
                            audiences__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Jwks => {
                            if jwks__.is_some() {
                                return Err(serde::de::Error::duplicate_field("jwks"));
                            }
                            jwks__ = Some(map_.next_value()?);
                        }
                        GeneratedField::JwksUri => {
                            if jwks_uri__.is_some() {
                                return Err(serde::de::Error::duplicate_field("jwksUri"));
                            }
                            jwks_uri__ = Some(map_.next_value()?);
                        }
                        GeneratedField::JwksRefreshSeconds => {
                            if jwks_refresh_seconds__.is_some() {
                                return Err(serde::de::Error::duplicate_field("jwksRefreshSeconds"));
                            }
                            jwks_refresh_seconds__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::FromHeaders => {
                            if from_headers__.is_some() {
                                return Err(serde::de::Error::duplicate_field("fromHeaders"));
                            }
                            from_headers__ = Some(map_.next_value()?);
                        }
                        GeneratedField::FromParams => {
                            if from_params__.is_some() {
                                return Err(serde::de::Error::duplicate_field("fromParams"));
                            }
                            from_params__ = Some(map_.next_value()?);
                        }
                        GeneratedField::OutputClaimToHeaders => {
                            if output_claim_to_headers__.is_some() {
                                return Err(serde::de::Error::duplicate_field("outputClaimToHeaders"));
                            }
                            output_claim_to_headers__ = Some(map_.next_value()?);
                        }
                        GeneratedField::ForwardOriginalToken => {
                            if forward_original_token__.is_some() {
                                return Err(serde::de::Error::duplicate_field("forwardOriginalToken"));
                            }
                            forward_original_token__ = Some(map_.next_value()?);
                        }
                        GeneratedField::ClockSkewSeconds => {
                            if clock_skew_seconds__.is_some() {
                                return Err(serde::de::Error::duplicate_field("clockSkewSeconds"));
                            }
                            clock_skew_seconds__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                    }
                }
                Ok(JwtRule {
                    issuer: issuer__.unwrap_or_default(),
                    audiences: audiences__.unwrap_or_default(),
                    jwks: jwks__.unwrap_or_default(),
                    jwks_uri: jwks_uri__.unwrap_or_default(),
                    jwks_refresh_seconds: jwks_refresh_seconds__.unwrap_or_default(),
                    from_headers: from_headers__.unwrap_or_default(),
                    from_params: from_params__.unwrap_or_default(),
                    output_claim_to_headers: output_claim_to_headers__.unwrap_or_default(),
                    forward_original_token: forward_original_token__.unwrap_or_default(),
                    clock_skew_seconds: clock_skew_seconds__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.JwtRule", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for MtlsMode {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        let variant = match self {
            Self::Unspecified => "MTLS_MODE_UNSPECIFIED",
            Self::Permissive => "MTLS_MODE_PERMISSIVE",
            Self::Strict => "MTLS_MODE_STRICT",
        };
        serializer.serialize_str(variant)
    }
}
impl<'de> serde::Deserialize<'de> for MtlsMode {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "MTLS_MODE_UNSPECIFIED",
            "MTLS_MODE_PERMISSIVE",
            "MTLS_MODE_STRICT",
        ];

        struct GeneratedVisitor;

        impl serde::de::Visitor<'_> for GeneratedVisitor {
            type Value = MtlsMode;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(formatter, "expected one of: {:?}", &FIELDS)
            }

            fn visit_i64<E>(self, v: i64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Signed(v), &self)
                    })
            }

            fn visit_u64<E>(self, v: u64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Unsigned(v), &self)
                    })
            }

            fn visit_str<E>(self, value: &str) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                match value {
                    "MTLS_MODE_UNSPECIFIED" => Ok(MtlsMode::Unspecified),
                    "MTLS_MODE_PERMISSIVE" => Ok(MtlsMode::Permissive),
                    "MTLS_MODE_STRICT" => Ok(MtlsMode::Strict),
                    _ => Err(serde::de::Error::unknown_variant(value, FIELDS)),
                }
            }
        }
        deserializer.deserialize_any(GeneratedVisitor)
    }
}
impl serde::Serialize for OutlierDetection {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if self.consecutive_5xx_errors != 0 {
            len += 1;
        }
        if self.consecutive_gateway_errors != 0 {
            len += 1;
        }
        if self.success_rate.is_some() {
            len += 1;
        }
        if self.interval_ms != 0 {
            len += 1;
        }
        if self.base_ejection_time_ms != 0 {
            len += 1;
        }
        if self.max_ejection_percent != 0 {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.OutlierDetection", len)?;
        if self.consecutive_5xx_errors != 0 {
            struct_ser.serialize_field("consecutive5xxErrors", &self.consecutive_5xx_errors)?;
        }
        if self.consecutive_gateway_errors != 0 {
            struct_ser.serialize_field("consecutiveGatewayErrors", &self.consecutive_gateway_errors)?;
        }
        if let Some(v) = self.success_rate.as_ref() {
            struct_ser.serialize_field("successRate", v)?;
        }
        if self.interval_ms != 0 {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("intervalMs", ToString::to_string(&self.interval_ms).as_str())?;
        }
        if self.base_ejection_time_ms != 0 {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("baseEjectionTimeMs", ToString::to_string(&self.base_ejection_time_ms).as_str())?;
        }
        if self.max_ejection_percent != 0 {
            struct_ser.serialize_field("maxEjectionPercent", &self.max_ejection_percent)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for OutlierDetection {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "consecutive_5xx_errors",
            "consecutive5xxErrors",
            "consecutive_gateway_errors",
            "consecutiveGatewayErrors",
            "success_rate",
            "successRate",
            "interval_ms",
            "intervalMs",
            "base_ejection_time_ms",
            "baseEjectionTimeMs",
            "max_ejection_percent",
            "maxEjectionPercent",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Consecutive5xxErrors,
            ConsecutiveGatewayErrors,
            SuccessRate,
            IntervalMs,
            BaseEjectionTimeMs,
            MaxEjectionPercent,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "consecutive5xxErrors" | "consecutive_5xx_errors" => Ok(GeneratedField::Consecutive5xxErrors),
                            "consecutiveGatewayErrors" | "consecutive_gateway_errors" => Ok(GeneratedField::ConsecutiveGatewayErrors),
                            "successRate" | "success_rate" => Ok(GeneratedField::SuccessRate),
                            "intervalMs" | "interval_ms" => Ok(GeneratedField::IntervalMs),
                            "baseEjectionTimeMs" | "base_ejection_time_ms" => Ok(GeneratedField::BaseEjectionTimeMs),
                            "maxEjectionPercent" | "max_ejection_percent" => Ok(GeneratedField::MaxEjectionPercent),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = OutlierDetection;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.OutlierDetection")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<OutlierDetection, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut consecutive_5xx_errors__ = None;
                let mut consecutive_gateway_errors__ = None;
                let mut success_rate__ = None;
                let mut interval_ms__ = None;
                let mut base_ejection_time_ms__ = None;
                let mut max_ejection_percent__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Consecutive5xxErrors => {
                            if consecutive_5xx_errors__.is_some() {
                                return Err(serde::de::Error::duplicate_field("consecutive5xxErrors"));
                            }
                            consecutive_5xx_errors__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::ConsecutiveGatewayErrors => {
                            if consecutive_gateway_errors__.is_some() {
                                return Err(serde::de::Error::duplicate_field("consecutiveGatewayErrors"));
                            }
                            consecutive_gateway_errors__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::SuccessRate => {
                            if success_rate__.is_some() {
                                return Err(serde::de::Error::duplicate_field("successRate"));
                            }
                            success_rate__ = map_.next_value()?;
                        }
                        GeneratedField::IntervalMs => {
                            if interval_ms__.is_some() {
                                return Err(serde::de::Error::duplicate_field("intervalMs"));
                            }
                            interval_ms__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::BaseEjectionTimeMs => {
                            if base_ejection_time_ms__.is_some() {
                                return Err(serde::de::Error::duplicate_field("baseEjectionTimeMs"));
                            }
                            base_ejection_time_ms__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::MaxEjectionPercent => {
                            if max_ejection_percent__.is_some() {
                                return Err(serde::de::Error::duplicate_field("maxEjectionPercent"));
                            }
                            max_ejection_percent__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                    }
                }
                Ok(OutlierDetection {
                    consecutive_5xx_errors: consecutive_5xx_errors__.unwrap_or_default(),
                    consecutive_gateway_errors: consecutive_gateway_errors__.unwrap_or_default(),
                    success_rate: success_rate__,
                    interval_ms: interval_ms__.unwrap_or_default(),
                    base_ejection_time_ms: base_ejection_time_ms__.unwrap_or_default(),
                    max_ejection_percent: max_ejection_percent__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.OutlierDetection", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for PathMatchType {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        let variant = match self {
            Self::Unspecified => "PATH_MATCH_TYPE_UNSPECIFIED",
            Self::Prefix => "PATH_MATCH_TYPE_PREFIX",
            Self::Exact => "PATH_MATCH_TYPE_EXACT",
            Self::RegularExpression => "PATH_MATCH_TYPE_REGULAR_EXPRESSION",
        };
        serializer.serialize_str(variant)
    }
}
impl<'de> serde::Deserialize<'de> for PathMatchType {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "PATH_MATCH_TYPE_UNSPECIFIED",
            "PATH_MATCH_TYPE_PREFIX",
            "PATH_MATCH_TYPE_EXACT",
            "PATH_MATCH_TYPE_REGULAR_EXPRESSION",
        ];

        struct GeneratedVisitor;

        impl serde::de::Visitor<'_> for GeneratedVisitor {
            type Value = PathMatchType;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(formatter, "expected one of: {:?}", &FIELDS)
            }

            fn visit_i64<E>(self, v: i64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Signed(v), &self)
                    })
            }

            fn visit_u64<E>(self, v: u64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Unsigned(v), &self)
                    })
            }

            fn visit_str<E>(self, value: &str) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                match value {
                    "PATH_MATCH_TYPE_UNSPECIFIED" => Ok(PathMatchType::Unspecified),
                    "PATH_MATCH_TYPE_PREFIX" => Ok(PathMatchType::Prefix),
                    "PATH_MATCH_TYPE_EXACT" => Ok(PathMatchType::Exact),
                    "PATH_MATCH_TYPE_REGULAR_EXPRESSION" => Ok(PathMatchType::RegularExpression),
                    _ => Err(serde::de::Error::unknown_variant(value, FIELDS)),
                }
            }
        }
        deserializer.deserialize_any(GeneratedVisitor)
    }
}
impl serde::Serialize for PathModifier {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if self.prefix {
            len += 1;
        }
        if !self.value.is_empty() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.PathModifier", len)?;
        if self.prefix {
            struct_ser.serialize_field("prefix", &self.prefix)?;
        }
        if !self.value.is_empty() {
            struct_ser.serialize_field("value", &self.value)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for PathModifier {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "prefix",
            "value",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Prefix,
            Value,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "prefix" => Ok(GeneratedField::Prefix),
                            "value" => Ok(GeneratedField::Value),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = PathModifier;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.PathModifier")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<PathModifier, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut prefix__ = None;
                let mut value__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Prefix => {
                            if prefix__.is_some() {
                                return Err(serde::de::Error::duplicate_field("prefix"));
                            }
                            prefix__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Value => {
                            if value__.is_some() {
                                return Err(serde::de::Error::duplicate_field("value"));
                            }
                            value__ = Some(map_.next_value()?);
                        }
                    }
                }
                Ok(PathModifier {
                    prefix: prefix__.unwrap_or_default(),
                    value: value__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.PathModifier", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RateLimit {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if self.requests != 0 {
            len += 1;
        }
        if self.per_ms != 0 {
            len += 1;
        }
        if self.burst != 0 {
            len += 1;
        }
        if self.key != 0 {
            len += 1;
        }
        if !self.header.is_empty() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.RateLimit", len)?;
        if self.requests != 0 {
            struct_ser.serialize_field("requests", &self.requests)?;
        }
        if self.per_ms != 0 {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("perMs", ToString::to_string(&self.per_ms).as_str())?;
        }
        if self.burst != 0 {
            struct_ser.serialize_field("burst", &self.burst)?;
        }
        if self.key != 0 {
            let v = RateLimitKey::try_from(self.key)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.key)))?;
            struct_ser.serialize_field("key", &v)?;
        }
        if !self.header.is_empty() {
            struct_ser.serialize_field("header", &self.header)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for RateLimit {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "requests",
            "per_ms",
            "perMs",
            "burst",
            "key",
            "header",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Requests,
            PerMs,
            Burst,
            Key,
            Header,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "requests" => Ok(GeneratedField::Requests),
                            "perMs" | "per_ms" => Ok(GeneratedField::PerMs),
                            "burst" => Ok(GeneratedField::Burst),
                            "key" => Ok(GeneratedField::Key),
                            "header" => Ok(GeneratedField::Header),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = RateLimit;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.RateLimit")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<RateLimit, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut requests__ = None;
                let mut per_ms__ = None;
                let mut burst__ = None;
                let mut key__ = None;
                let mut header__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Requests => {
                            if requests__.is_some() {
                                return Err(serde::de::Error::duplicate_field("requests"));
                            }
                            requests__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::PerMs => {
                            if per_ms__.is_some() {
                                return Err(serde::de::Error::duplicate_field("perMs"));
                            }
                            per_ms__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::Burst => {
                            if burst__.is_some() {
                                return Err(serde::de::Error::duplicate_field("burst"));
                            }
                            burst__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::Key => {
                            if key__.is_some() {
                                return Err(serde::de::Error::duplicate_field("key"));
                            }
                            key__ = Some(map_.next_value::<RateLimitKey>()? as i32);
                        }
                        GeneratedField::Header => {
                            if header__.is_some() {
                                return Err(serde::de::Error::duplicate_field("header"));
                            }
                            header__ = Some(map_.next_value()?);
                        }
                    }
                }
                Ok(RateLimit {
                    requests: requests__.unwrap_or_default(),
                    per_ms: per_ms__.unwrap_or_default(),
                    burst: burst__.unwrap_or_default(),
                    key: key__.unwrap_or_default(),
                    header: header__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.RateLimit", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RateLimitKey {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        let variant = match self {
            Self::Unspecified => "RATE_LIMIT_KEY_UNSPECIFIED",
            Self::Route => "RATE_LIMIT_KEY_ROUTE",
            Self::SourceIdentity => "RATE_LIMIT_KEY_SOURCE_IDENTITY",
            Self::Header => "RATE_LIMIT_KEY_HEADER",
        };
        serializer.serialize_str(variant)
    }
}
impl<'de> serde::Deserialize<'de> for RateLimitKey {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "RATE_LIMIT_KEY_UNSPECIFIED",
            "RATE_LIMIT_KEY_ROUTE",
            "RATE_LIMIT_KEY_SOURCE_IDENTITY",
            "RATE_LIMIT_KEY_HEADER",
        ];

        struct GeneratedVisitor;

        impl serde::de::Visitor<'_> for GeneratedVisitor {
            type Value = RateLimitKey;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(formatter, "expected one of: {:?}", &FIELDS)
            }

            fn visit_i64<E>(self, v: i64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Signed(v), &self)
                    })
            }

            fn visit_u64<E>(self, v: u64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Unsigned(v), &self)
                    })
            }

            fn visit_str<E>(self, value: &str) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                match value {
                    "RATE_LIMIT_KEY_UNSPECIFIED" => Ok(RateLimitKey::Unspecified),
                    "RATE_LIMIT_KEY_ROUTE" => Ok(RateLimitKey::Route),
                    "RATE_LIMIT_KEY_SOURCE_IDENTITY" => Ok(RateLimitKey::SourceIdentity),
                    "RATE_LIMIT_KEY_HEADER" => Ok(RateLimitKey::Header),
                    _ => Err(serde::de::Error::unknown_variant(value, FIELDS)),
                }
            }
        }
        deserializer.deserialize_any(GeneratedVisitor)
    }
}
impl serde::Serialize for Report {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.subject.is_empty() {
            len += 1;
        }
        if self.ok {
            len += 1;
        }
        if !self.error.is_empty() {
            len += 1;
        }
        if self.last_good_kept {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.Report", len)?;
        if !self.subject.is_empty() {
            struct_ser.serialize_field("subject", &self.subject)?;
        }
        if self.ok {
            struct_ser.serialize_field("ok", &self.ok)?;
        }
        if !self.error.is_empty() {
            struct_ser.serialize_field("error", &self.error)?;
        }
        if self.last_good_kept {
            struct_ser.serialize_field("lastGoodKept", &self.last_good_kept)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for Report {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "subject",
            "ok",
            "error",
            "last_good_kept",
            "lastGoodKept",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Subject,
            Ok,
            Error,
            LastGoodKept,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "subject" => Ok(GeneratedField::Subject),
                            "ok" => Ok(GeneratedField::Ok),
                            "error" => Ok(GeneratedField::Error),
                            "lastGoodKept" | "last_good_kept" => Ok(GeneratedField::LastGoodKept),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = Report;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.Report")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<Report, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut subject__ = None;
                let mut ok__ = None;
                let mut error__ = None;
                let mut last_good_kept__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Subject => {
                            if subject__.is_some() {
                                return Err(serde::de::Error::duplicate_field("subject"));
                            }
                            subject__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Ok => {
                            if ok__.is_some() {
                                return Err(serde::de::Error::duplicate_field("ok"));
                            }
                            ok__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Error => {
                            if error__.is_some() {
                                return Err(serde::de::Error::duplicate_field("error"));
                            }
                            error__ = Some(map_.next_value()?);
                        }
                        GeneratedField::LastGoodKept => {
                            if last_good_kept__.is_some() {
                                return Err(serde::de::Error::duplicate_field("lastGoodKept"));
                            }
                            last_good_kept__ = Some(map_.next_value()?);
                        }
                    }
                }
                Ok(Report {
                    subject: subject__.unwrap_or_default(),
                    ok: ok__.unwrap_or_default(),
                    error: error__.unwrap_or_default(),
                    last_good_kept: last_good_kept__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.Report", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for Resource {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.name.is_empty() {
            len += 1;
        }
        if self.version != 0 {
            len += 1;
        }
        if self.kind.is_some() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.Resource", len)?;
        if !self.name.is_empty() {
            struct_ser.serialize_field("name", &self.name)?;
        }
        if self.version != 0 {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("version", ToString::to_string(&self.version).as_str())?;
        }
        if let Some(v) = self.kind.as_ref() {
            match v {
                resource::Kind::Workload(v) => {
                    struct_ser.serialize_field("workload", v)?;
                }
                resource::Kind::Service(v) => {
                    struct_ser.serialize_field("service", v)?;
                }
                resource::Kind::Authorization(v) => {
                    struct_ser.serialize_field("authorization", v)?;
                }
                resource::Kind::HttpRoute(v) => {
                    struct_ser.serialize_field("httpRoute", v)?;
                }
                resource::Kind::Authentication(v) => {
                    struct_ser.serialize_field("authentication", v)?;
                }
                resource::Kind::TrafficPolicy(v) => {
                    struct_ser.serialize_field("trafficPolicy", v)?;
                }
                resource::Kind::TrustBundle(v) => {
                    struct_ser.serialize_field("trustBundle", v)?;
                }
            }
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for Resource {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "name",
            "version",
            "workload",
            "service",
            "authorization",
            "http_route",
            "httpRoute",
            "authentication",
            "traffic_policy",
            "trafficPolicy",
            "trust_bundle",
            "trustBundle",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Name,
            Version,
            Workload,
            Service,
            Authorization,
            HttpRoute,
            Authentication,
            TrafficPolicy,
            TrustBundle,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "name" => Ok(GeneratedField::Name),
                            "version" => Ok(GeneratedField::Version),
                            "workload" => Ok(GeneratedField::Workload),
                            "service" => Ok(GeneratedField::Service),
                            "authorization" => Ok(GeneratedField::Authorization),
                            "httpRoute" | "http_route" => Ok(GeneratedField::HttpRoute),
                            "authentication" => Ok(GeneratedField::Authentication),
                            "trafficPolicy" | "traffic_policy" => Ok(GeneratedField::TrafficPolicy),
                            "trustBundle" | "trust_bundle" => Ok(GeneratedField::TrustBundle),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = Resource;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.Resource")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<Resource, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut name__ = None;
                let mut version__ = None;
                let mut kind__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Name => {
                            if name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("name"));
                            }
                            name__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Version => {
                            if version__.is_some() {
                                return Err(serde::de::Error::duplicate_field("version"));
                            }
                            version__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::Workload => {
                            if kind__.is_some() {
                                return Err(serde::de::Error::duplicate_field("workload"));
                            }
                            kind__ = map_.next_value::<::std::option::Option<_>>()?.map(resource::Kind::Workload)
;
                        }
                        GeneratedField::Service => {
                            if kind__.is_some() {
                                return Err(serde::de::Error::duplicate_field("service"));
                            }
                            kind__ = map_.next_value::<::std::option::Option<_>>()?.map(resource::Kind::Service)
;
                        }
                        GeneratedField::Authorization => {
                            if kind__.is_some() {
                                return Err(serde::de::Error::duplicate_field("authorization"));
                            }
                            kind__ = map_.next_value::<::std::option::Option<_>>()?.map(resource::Kind::Authorization)
;
                        }
                        GeneratedField::HttpRoute => {
                            if kind__.is_some() {
                                return Err(serde::de::Error::duplicate_field("httpRoute"));
                            }
                            kind__ = map_.next_value::<::std::option::Option<_>>()?.map(resource::Kind::HttpRoute)
;
                        }
                        GeneratedField::Authentication => {
                            if kind__.is_some() {
                                return Err(serde::de::Error::duplicate_field("authentication"));
                            }
                            kind__ = map_.next_value::<::std::option::Option<_>>()?.map(resource::Kind::Authentication)
;
                        }
                        GeneratedField::TrafficPolicy => {
                            if kind__.is_some() {
                                return Err(serde::de::Error::duplicate_field("trafficPolicy"));
                            }
                            kind__ = map_.next_value::<::std::option::Option<_>>()?.map(resource::Kind::TrafficPolicy)
;
                        }
                        GeneratedField::TrustBundle => {
                            if kind__.is_some() {
                                return Err(serde::de::Error::duplicate_field("trustBundle"));
                            }
                            kind__ = map_.next_value::<::std::option::Option<_>>()?.map(resource::Kind::TrustBundle)
;
                        }
                    }
                }
                Ok(Resource {
                    name: name__.unwrap_or_default(),
                    version: version__.unwrap_or_default(),
                    kind: kind__,
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.Resource", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RouteBackend {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if self.target.is_some() {
            len += 1;
        }
        if self.weight != 0 {
            len += 1;
        }
        if !self.filters.is_empty() {
            len += 1;
        }
        if !self.invalid.is_empty() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.RouteBackend", len)?;
        if let Some(v) = self.target.as_ref() {
            struct_ser.serialize_field("target", v)?;
        }
        if self.weight != 0 {
            struct_ser.serialize_field("weight", &self.weight)?;
        }
        if !self.filters.is_empty() {
            struct_ser.serialize_field("filters", &self.filters)?;
        }
        if !self.invalid.is_empty() {
            struct_ser.serialize_field("invalid", &self.invalid)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for RouteBackend {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "target",
            "weight",
            "filters",
            "invalid",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Target,
            Weight,
            Filters,
            Invalid,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "target" => Ok(GeneratedField::Target),
                            "weight" => Ok(GeneratedField::Weight),
                            "filters" => Ok(GeneratedField::Filters),
                            "invalid" => Ok(GeneratedField::Invalid),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = RouteBackend;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.RouteBackend")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<RouteBackend, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut target__ = None;
                let mut weight__ = None;
                let mut filters__ = None;
                let mut invalid__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Target => {
                            if target__.is_some() {
                                return Err(serde::de::Error::duplicate_field("target"));
                            }
                            target__ = map_.next_value()?;
                        }
                        GeneratedField::Weight => {
                            if weight__.is_some() {
                                return Err(serde::de::Error::duplicate_field("weight"));
                            }
                            weight__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::Filters => {
                            if filters__.is_some() {
                                return Err(serde::de::Error::duplicate_field("filters"));
                            }
                            filters__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Invalid => {
                            if invalid__.is_some() {
                                return Err(serde::de::Error::duplicate_field("invalid"));
                            }
                            invalid__ = Some(map_.next_value()?);
                        }
                    }
                }
                Ok(RouteBackend {
                    target: target__,
                    weight: weight__.unwrap_or_default(),
                    filters: filters__.unwrap_or_default(),
                    invalid: invalid__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.RouteBackend", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RouteFilter {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if self.kind.is_some() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.RouteFilter", len)?;
        if let Some(v) = self.kind.as_ref() {
            match v {
                route_filter::Kind::RequestHeaders(v) => {
                    struct_ser.serialize_field("requestHeaders", v)?;
                }
                route_filter::Kind::ResponseHeaders(v) => {
                    struct_ser.serialize_field("responseHeaders", v)?;
                }
                route_filter::Kind::Redirect(v) => {
                    struct_ser.serialize_field("redirect", v)?;
                }
                route_filter::Kind::Rewrite(v) => {
                    struct_ser.serialize_field("rewrite", v)?;
                }
                route_filter::Kind::Mirror(v) => {
                    struct_ser.serialize_field("mirror", v)?;
                }
            }
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for RouteFilter {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "request_headers",
            "requestHeaders",
            "response_headers",
            "responseHeaders",
            "redirect",
            "rewrite",
            "mirror",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            RequestHeaders,
            ResponseHeaders,
            Redirect,
            Rewrite,
            Mirror,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "requestHeaders" | "request_headers" => Ok(GeneratedField::RequestHeaders),
                            "responseHeaders" | "response_headers" => Ok(GeneratedField::ResponseHeaders),
                            "redirect" => Ok(GeneratedField::Redirect),
                            "rewrite" => Ok(GeneratedField::Rewrite),
                            "mirror" => Ok(GeneratedField::Mirror),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = RouteFilter;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.RouteFilter")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<RouteFilter, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut kind__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::RequestHeaders => {
                            if kind__.is_some() {
                                return Err(serde::de::Error::duplicate_field("requestHeaders"));
                            }
                            kind__ = map_.next_value::<::std::option::Option<_>>()?.map(route_filter::Kind::RequestHeaders)
;
                        }
                        GeneratedField::ResponseHeaders => {
                            if kind__.is_some() {
                                return Err(serde::de::Error::duplicate_field("responseHeaders"));
                            }
                            kind__ = map_.next_value::<::std::option::Option<_>>()?.map(route_filter::Kind::ResponseHeaders)
;
                        }
                        GeneratedField::Redirect => {
                            if kind__.is_some() {
                                return Err(serde::de::Error::duplicate_field("redirect"));
                            }
                            kind__ = map_.next_value::<::std::option::Option<_>>()?.map(route_filter::Kind::Redirect)
;
                        }
                        GeneratedField::Rewrite => {
                            if kind__.is_some() {
                                return Err(serde::de::Error::duplicate_field("rewrite"));
                            }
                            kind__ = map_.next_value::<::std::option::Option<_>>()?.map(route_filter::Kind::Rewrite)
;
                        }
                        GeneratedField::Mirror => {
                            if kind__.is_some() {
                                return Err(serde::de::Error::duplicate_field("mirror"));
                            }
                            kind__ = map_.next_value::<::std::option::Option<_>>()?.map(route_filter::Kind::Mirror)
;
                        }
                    }
                }
                Ok(RouteFilter {
                    kind: kind__,
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.RouteFilter", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RouteMatch {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if self.path_type != 0 {
            len += 1;
        }
        if !self.path.is_empty() {
            len += 1;
        }
        if !self.headers.is_empty() {
            len += 1;
        }
        if !self.query_params.is_empty() {
            len += 1;
        }
        if !self.method.is_empty() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.RouteMatch", len)?;
        if self.path_type != 0 {
            let v = PathMatchType::try_from(self.path_type)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.path_type)))?;
            struct_ser.serialize_field("pathType", &v)?;
        }
        if !self.path.is_empty() {
            struct_ser.serialize_field("path", &self.path)?;
        }
        if !self.headers.is_empty() {
            struct_ser.serialize_field("headers", &self.headers)?;
        }
        if !self.query_params.is_empty() {
            struct_ser.serialize_field("queryParams", &self.query_params)?;
        }
        if !self.method.is_empty() {
            struct_ser.serialize_field("method", &self.method)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for RouteMatch {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "path_type",
            "pathType",
            "path",
            "headers",
            "query_params",
            "queryParams",
            "method",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            PathType,
            Path,
            Headers,
            QueryParams,
            Method,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "pathType" | "path_type" => Ok(GeneratedField::PathType),
                            "path" => Ok(GeneratedField::Path),
                            "headers" => Ok(GeneratedField::Headers),
                            "queryParams" | "query_params" => Ok(GeneratedField::QueryParams),
                            "method" => Ok(GeneratedField::Method),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = RouteMatch;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.RouteMatch")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<RouteMatch, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut path_type__ = None;
                let mut path__ = None;
                let mut headers__ = None;
                let mut query_params__ = None;
                let mut method__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::PathType => {
                            if path_type__.is_some() {
                                return Err(serde::de::Error::duplicate_field("pathType"));
                            }
                            path_type__ = Some(map_.next_value::<PathMatchType>()? as i32);
                        }
                        GeneratedField::Path => {
                            if path__.is_some() {
                                return Err(serde::de::Error::duplicate_field("path"));
                            }
                            path__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Headers => {
                            if headers__.is_some() {
                                return Err(serde::de::Error::duplicate_field("headers"));
                            }
                            headers__ = Some(map_.next_value()?);
                        }
                        GeneratedField::QueryParams => {
                            if query_params__.is_some() {
                                return Err(serde::de::Error::duplicate_field("queryParams"));
                            }
                            query_params__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Method => {
                            if method__.is_some() {
                                return Err(serde::de::Error::duplicate_field("method"));
                            }
                            method__ = Some(map_.next_value()?);
                        }
                    }
                }
                Ok(RouteMatch {
                    path_type: path_type__.unwrap_or_default(),
                    path: path__.unwrap_or_default(),
                    headers: headers__.unwrap_or_default(),
                    query_params: query_params__.unwrap_or_default(),
                    method: method__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.RouteMatch", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RouteMirror {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if self.backend.is_some() {
            len += 1;
        }
        if self.numerator != 0 {
            len += 1;
        }
        if self.denominator != 0 {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.RouteMirror", len)?;
        if let Some(v) = self.backend.as_ref() {
            struct_ser.serialize_field("backend", v)?;
        }
        if self.numerator != 0 {
            struct_ser.serialize_field("numerator", &self.numerator)?;
        }
        if self.denominator != 0 {
            struct_ser.serialize_field("denominator", &self.denominator)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for RouteMirror {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "backend",
            "numerator",
            "denominator",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Backend,
            Numerator,
            Denominator,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "backend" => Ok(GeneratedField::Backend),
                            "numerator" => Ok(GeneratedField::Numerator),
                            "denominator" => Ok(GeneratedField::Denominator),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = RouteMirror;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.RouteMirror")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<RouteMirror, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut backend__ = None;
                let mut numerator__ = None;
                let mut denominator__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Backend => {
                            if backend__.is_some() {
                                return Err(serde::de::Error::duplicate_field("backend"));
                            }
                            backend__ = map_.next_value()?;
                        }
                        GeneratedField::Numerator => {
                            if numerator__.is_some() {
                                return Err(serde::de::Error::duplicate_field("numerator"));
                            }
                            numerator__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::Denominator => {
                            if denominator__.is_some() {
                                return Err(serde::de::Error::duplicate_field("denominator"));
                            }
                            denominator__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                    }
                }
                Ok(RouteMirror {
                    backend: backend__,
                    numerator: numerator__.unwrap_or_default(),
                    denominator: denominator__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.RouteMirror", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RouteParent {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.namespace.is_empty() {
            len += 1;
        }
        if !self.name.is_empty() {
            len += 1;
        }
        if self.port != 0 {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.RouteParent", len)?;
        if !self.namespace.is_empty() {
            struct_ser.serialize_field("namespace", &self.namespace)?;
        }
        if !self.name.is_empty() {
            struct_ser.serialize_field("name", &self.name)?;
        }
        if self.port != 0 {
            struct_ser.serialize_field("port", &self.port)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for RouteParent {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "namespace",
            "name",
            "port",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Namespace,
            Name,
            Port,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "namespace" => Ok(GeneratedField::Namespace),
                            "name" => Ok(GeneratedField::Name),
                            "port" => Ok(GeneratedField::Port),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = RouteParent;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.RouteParent")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<RouteParent, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut namespace__ = None;
                let mut name__ = None;
                let mut port__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Namespace => {
                            if namespace__.is_some() {
                                return Err(serde::de::Error::duplicate_field("namespace"));
                            }
                            namespace__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Name => {
                            if name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("name"));
                            }
                            name__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Port => {
                            if port__.is_some() {
                                return Err(serde::de::Error::duplicate_field("port"));
                            }
                            port__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                    }
                }
                Ok(RouteParent {
                    namespace: namespace__.unwrap_or_default(),
                    name: name__.unwrap_or_default(),
                    port: port__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.RouteParent", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RouteRedirect {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.scheme.is_empty() {
            len += 1;
        }
        if !self.hostname.is_empty() {
            len += 1;
        }
        if self.path.is_some() {
            len += 1;
        }
        if self.port != 0 {
            len += 1;
        }
        if self.status != 0 {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.RouteRedirect", len)?;
        if !self.scheme.is_empty() {
            struct_ser.serialize_field("scheme", &self.scheme)?;
        }
        if !self.hostname.is_empty() {
            struct_ser.serialize_field("hostname", &self.hostname)?;
        }
        if let Some(v) = self.path.as_ref() {
            struct_ser.serialize_field("path", v)?;
        }
        if self.port != 0 {
            struct_ser.serialize_field("port", &self.port)?;
        }
        if self.status != 0 {
            struct_ser.serialize_field("status", &self.status)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for RouteRedirect {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "scheme",
            "hostname",
            "path",
            "port",
            "status",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Scheme,
            Hostname,
            Path,
            Port,
            Status,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "scheme" => Ok(GeneratedField::Scheme),
                            "hostname" => Ok(GeneratedField::Hostname),
                            "path" => Ok(GeneratedField::Path),
                            "port" => Ok(GeneratedField::Port),
                            "status" => Ok(GeneratedField::Status),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = RouteRedirect;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.RouteRedirect")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<RouteRedirect, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut scheme__ = None;
                let mut hostname__ = None;
                let mut path__ = None;
                let mut port__ = None;
                let mut status__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Scheme => {
                            if scheme__.is_some() {
                                return Err(serde::de::Error::duplicate_field("scheme"));
                            }
                            scheme__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Hostname => {
                            if hostname__.is_some() {
                                return Err(serde::de::Error::duplicate_field("hostname"));
                            }
                            hostname__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Path => {
                            if path__.is_some() {
                                return Err(serde::de::Error::duplicate_field("path"));
                            }
                            path__ = map_.next_value()?;
                        }
                        GeneratedField::Port => {
                            if port__.is_some() {
                                return Err(serde::de::Error::duplicate_field("port"));
                            }
                            port__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::Status => {
                            if status__.is_some() {
                                return Err(serde::de::Error::duplicate_field("status"));
                            }
                            status__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                    }
                }
                Ok(RouteRedirect {
                    scheme: scheme__.unwrap_or_default(),
                    hostname: hostname__.unwrap_or_default(),
                    path: path__,
                    port: port__.unwrap_or_default(),
                    status: status__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.RouteRedirect", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RouteRetry {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.codes.is_empty() {
            len += 1;
        }
        if self.attempts != 0 {
            len += 1;
        }
        if self.backoff_ms != 0 {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.RouteRetry", len)?;
        if !self.codes.is_empty() {
            struct_ser.serialize_field("codes", &self.codes)?;
        }
        if self.attempts != 0 {
            struct_ser.serialize_field("attempts", &self.attempts)?;
        }
        if self.backoff_ms != 0 {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("backoffMs", ToString::to_string(&self.backoff_ms).as_str())?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for RouteRetry {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "codes",
            "attempts",
            "backoff_ms",
            "backoffMs",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Codes,
            Attempts,
            BackoffMs,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "codes" => Ok(GeneratedField::Codes),
                            "attempts" => Ok(GeneratedField::Attempts),
                            "backoffMs" | "backoff_ms" => Ok(GeneratedField::BackoffMs),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = RouteRetry;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.RouteRetry")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<RouteRetry, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut codes__ = None;
                let mut attempts__ = None;
                let mut backoff_ms__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Codes => {
                            if codes__.is_some() {
                                return Err(serde::de::Error::duplicate_field("codes"));
                            }
                            codes__ = 
                                Some(map_.next_value::<Vec<::pbjson::private::NumberDeserialize<_>>>()?
                                    .into_iter().map(|x| x.0).collect())
                            ;
                        }
                        GeneratedField::Attempts => {
                            if attempts__.is_some() {
                                return Err(serde::de::Error::duplicate_field("attempts"));
                            }
                            attempts__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::BackoffMs => {
                            if backoff_ms__.is_some() {
                                return Err(serde::de::Error::duplicate_field("backoffMs"));
                            }
                            backoff_ms__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                    }
                }
                Ok(RouteRetry {
                    codes: codes__.unwrap_or_default(),
                    attempts: attempts__.unwrap_or_default(),
                    backoff_ms: backoff_ms__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.RouteRetry", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RouteRewrite {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.hostname.is_empty() {
            len += 1;
        }
        if self.path.is_some() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.RouteRewrite", len)?;
        if !self.hostname.is_empty() {
            struct_ser.serialize_field("hostname", &self.hostname)?;
        }
        if let Some(v) = self.path.as_ref() {
            struct_ser.serialize_field("path", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for RouteRewrite {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "hostname",
            "path",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Hostname,
            Path,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "hostname" => Ok(GeneratedField::Hostname),
                            "path" => Ok(GeneratedField::Path),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = RouteRewrite;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.RouteRewrite")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<RouteRewrite, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut hostname__ = None;
                let mut path__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Hostname => {
                            if hostname__.is_some() {
                                return Err(serde::de::Error::duplicate_field("hostname"));
                            }
                            hostname__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Path => {
                            if path__.is_some() {
                                return Err(serde::de::Error::duplicate_field("path"));
                            }
                            path__ = map_.next_value()?;
                        }
                    }
                }
                Ok(RouteRewrite {
                    hostname: hostname__.unwrap_or_default(),
                    path: path__,
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.RouteRewrite", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RouteRule {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.name.is_empty() {
            len += 1;
        }
        if !self.matches.is_empty() {
            len += 1;
        }
        if !self.filters.is_empty() {
            len += 1;
        }
        if !self.backends.is_empty() {
            len += 1;
        }
        if self.request_timeout_ms != 0 {
            len += 1;
        }
        if self.backend_request_timeout_ms != 0 {
            len += 1;
        }
        if self.retry.is_some() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.RouteRule", len)?;
        if !self.name.is_empty() {
            struct_ser.serialize_field("name", &self.name)?;
        }
        if !self.matches.is_empty() {
            struct_ser.serialize_field("matches", &self.matches)?;
        }
        if !self.filters.is_empty() {
            struct_ser.serialize_field("filters", &self.filters)?;
        }
        if !self.backends.is_empty() {
            struct_ser.serialize_field("backends", &self.backends)?;
        }
        if self.request_timeout_ms != 0 {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("requestTimeoutMs", ToString::to_string(&self.request_timeout_ms).as_str())?;
        }
        if self.backend_request_timeout_ms != 0 {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("backendRequestTimeoutMs", ToString::to_string(&self.backend_request_timeout_ms).as_str())?;
        }
        if let Some(v) = self.retry.as_ref() {
            struct_ser.serialize_field("retry", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for RouteRule {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "name",
            "matches",
            "filters",
            "backends",
            "request_timeout_ms",
            "requestTimeoutMs",
            "backend_request_timeout_ms",
            "backendRequestTimeoutMs",
            "retry",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Name,
            Matches,
            Filters,
            Backends,
            RequestTimeoutMs,
            BackendRequestTimeoutMs,
            Retry,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "name" => Ok(GeneratedField::Name),
                            "matches" => Ok(GeneratedField::Matches),
                            "filters" => Ok(GeneratedField::Filters),
                            "backends" => Ok(GeneratedField::Backends),
                            "requestTimeoutMs" | "request_timeout_ms" => Ok(GeneratedField::RequestTimeoutMs),
                            "backendRequestTimeoutMs" | "backend_request_timeout_ms" => Ok(GeneratedField::BackendRequestTimeoutMs),
                            "retry" => Ok(GeneratedField::Retry),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = RouteRule;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.RouteRule")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<RouteRule, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut name__ = None;
                let mut matches__ = None;
                let mut filters__ = None;
                let mut backends__ = None;
                let mut request_timeout_ms__ = None;
                let mut backend_request_timeout_ms__ = None;
                let mut retry__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Name => {
                            if name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("name"));
                            }
                            name__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Matches => {
                            if matches__.is_some() {
                                return Err(serde::de::Error::duplicate_field("matches"));
                            }
                            matches__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Filters => {
                            if filters__.is_some() {
                                return Err(serde::de::Error::duplicate_field("filters"));
                            }
                            filters__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Backends => {
                            if backends__.is_some() {
                                return Err(serde::de::Error::duplicate_field("backends"));
                            }
                            backends__ = Some(map_.next_value()?);
                        }
                        GeneratedField::RequestTimeoutMs => {
                            if request_timeout_ms__.is_some() {
                                return Err(serde::de::Error::duplicate_field("requestTimeoutMs"));
                            }
                            request_timeout_ms__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::BackendRequestTimeoutMs => {
                            if backend_request_timeout_ms__.is_some() {
                                return Err(serde::de::Error::duplicate_field("backendRequestTimeoutMs"));
                            }
                            backend_request_timeout_ms__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::Retry => {
                            if retry__.is_some() {
                                return Err(serde::de::Error::duplicate_field("retry"));
                            }
                            retry__ = map_.next_value()?;
                        }
                    }
                }
                Ok(RouteRule {
                    name: name__.unwrap_or_default(),
                    matches: matches__.unwrap_or_default(),
                    filters: filters__.unwrap_or_default(),
                    backends: backends__.unwrap_or_default(),
                    request_timeout_ms: request_timeout_ms__.unwrap_or_default(),
                    backend_request_timeout_ms: backend_request_timeout_ms__.unwrap_or_default(),
                    retry: retry__,
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.RouteRule", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for Service {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.name.is_empty() {
            len += 1;
        }
        if !self.namespace.is_empty() {
            len += 1;
        }
        if !self.vips.is_empty() {
            len += 1;
        }
        if !self.ports.is_empty() {
            len += 1;
        }
        if !self.endpoints.is_empty() {
            len += 1;
        }
        if self.waypoint.is_some() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.Service", len)?;
        if !self.name.is_empty() {
            struct_ser.serialize_field("name", &self.name)?;
        }
        if !self.namespace.is_empty() {
            struct_ser.serialize_field("namespace", &self.namespace)?;
        }
        if !self.vips.is_empty() {
            struct_ser.serialize_field("vips", &self.vips)?;
        }
        if !self.ports.is_empty() {
            struct_ser.serialize_field("ports", &self.ports)?;
        }
        if !self.endpoints.is_empty() {
            struct_ser.serialize_field("endpoints", &self.endpoints)?;
        }
        if let Some(v) = self.waypoint.as_ref() {
            struct_ser.serialize_field("waypoint", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for Service {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "name",
            "namespace",
            "vips",
            "ports",
            "endpoints",
            "waypoint",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Name,
            Namespace,
            Vips,
            Ports,
            Endpoints,
            Waypoint,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "name" => Ok(GeneratedField::Name),
                            "namespace" => Ok(GeneratedField::Namespace),
                            "vips" => Ok(GeneratedField::Vips),
                            "ports" => Ok(GeneratedField::Ports),
                            "endpoints" => Ok(GeneratedField::Endpoints),
                            "waypoint" => Ok(GeneratedField::Waypoint),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = Service;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.Service")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<Service, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut name__ = None;
                let mut namespace__ = None;
                let mut vips__ = None;
                let mut ports__ = None;
                let mut endpoints__ = None;
                let mut waypoint__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Name => {
                            if name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("name"));
                            }
                            name__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Namespace => {
                            if namespace__.is_some() {
                                return Err(serde::de::Error::duplicate_field("namespace"));
                            }
                            namespace__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Vips => {
                            if vips__.is_some() {
                                return Err(serde::de::Error::duplicate_field("vips"));
                            }
                            vips__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Ports => {
                            if ports__.is_some() {
                                return Err(serde::de::Error::duplicate_field("ports"));
                            }
                            ports__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Endpoints => {
                            if endpoints__.is_some() {
                                return Err(serde::de::Error::duplicate_field("endpoints"));
                            }
                            endpoints__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Waypoint => {
                            if waypoint__.is_some() {
                                return Err(serde::de::Error::duplicate_field("waypoint"));
                            }
                            waypoint__ = map_.next_value()?;
                        }
                    }
                }
                Ok(Service {
                    name: name__.unwrap_or_default(),
                    namespace: namespace__.unwrap_or_default(),
                    vips: vips__.unwrap_or_default(),
                    ports: ports__.unwrap_or_default(),
                    endpoints: endpoints__.unwrap_or_default(),
                    waypoint: waypoint__,
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.Service", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ServicePort {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.name.is_empty() {
            len += 1;
        }
        if self.port != 0 {
            len += 1;
        }
        if self.target_port != 0 {
            len += 1;
        }
        if !self.app_protocol.is_empty() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.ServicePort", len)?;
        if !self.name.is_empty() {
            struct_ser.serialize_field("name", &self.name)?;
        }
        if self.port != 0 {
            struct_ser.serialize_field("port", &self.port)?;
        }
        if self.target_port != 0 {
            struct_ser.serialize_field("targetPort", &self.target_port)?;
        }
        if !self.app_protocol.is_empty() {
            struct_ser.serialize_field("appProtocol", &self.app_protocol)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ServicePort {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "name",
            "port",
            "target_port",
            "targetPort",
            "app_protocol",
            "appProtocol",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Name,
            Port,
            TargetPort,
            AppProtocol,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "name" => Ok(GeneratedField::Name),
                            "port" => Ok(GeneratedField::Port),
                            "targetPort" | "target_port" => Ok(GeneratedField::TargetPort),
                            "appProtocol" | "app_protocol" => Ok(GeneratedField::AppProtocol),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ServicePort;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.ServicePort")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ServicePort, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut name__ = None;
                let mut port__ = None;
                let mut target_port__ = None;
                let mut app_protocol__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Name => {
                            if name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("name"));
                            }
                            name__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Port => {
                            if port__.is_some() {
                                return Err(serde::de::Error::duplicate_field("port"));
                            }
                            port__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::TargetPort => {
                            if target_port__.is_some() {
                                return Err(serde::de::Error::duplicate_field("targetPort"));
                            }
                            target_port__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::AppProtocol => {
                            if app_protocol__.is_some() {
                                return Err(serde::de::Error::duplicate_field("appProtocol"));
                            }
                            app_protocol__ = Some(map_.next_value()?);
                        }
                    }
                }
                Ok(ServicePort {
                    name: name__.unwrap_or_default(),
                    port: port__.unwrap_or_default(),
                    target_port: target_port__.unwrap_or_default(),
                    app_protocol: app_protocol__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.ServicePort", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for SuccessRate {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if self.minimum_hosts != 0 {
            len += 1;
        }
        if self.request_volume != 0 {
            len += 1;
        }
        if self.threshold_percent != 0 {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.SuccessRate", len)?;
        if self.minimum_hosts != 0 {
            struct_ser.serialize_field("minimumHosts", &self.minimum_hosts)?;
        }
        if self.request_volume != 0 {
            struct_ser.serialize_field("requestVolume", &self.request_volume)?;
        }
        if self.threshold_percent != 0 {
            struct_ser.serialize_field("thresholdPercent", &self.threshold_percent)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for SuccessRate {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "minimum_hosts",
            "minimumHosts",
            "request_volume",
            "requestVolume",
            "threshold_percent",
            "thresholdPercent",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            MinimumHosts,
            RequestVolume,
            ThresholdPercent,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "minimumHosts" | "minimum_hosts" => Ok(GeneratedField::MinimumHosts),
                            "requestVolume" | "request_volume" => Ok(GeneratedField::RequestVolume),
                            "thresholdPercent" | "threshold_percent" => Ok(GeneratedField::ThresholdPercent),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = SuccessRate;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.SuccessRate")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<SuccessRate, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut minimum_hosts__ = None;
                let mut request_volume__ = None;
                let mut threshold_percent__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::MinimumHosts => {
                            if minimum_hosts__.is_some() {
                                return Err(serde::de::Error::duplicate_field("minimumHosts"));
                            }
                            minimum_hosts__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::RequestVolume => {
                            if request_volume__.is_some() {
                                return Err(serde::de::Error::duplicate_field("requestVolume"));
                            }
                            request_volume__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::ThresholdPercent => {
                            if threshold_percent__.is_some() {
                                return Err(serde::de::Error::duplicate_field("thresholdPercent"));
                            }
                            threshold_percent__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                    }
                }
                Ok(SuccessRate {
                    minimum_hosts: minimum_hosts__.unwrap_or_default(),
                    request_volume: request_volume__.unwrap_or_default(),
                    threshold_percent: threshold_percent__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.SuccessRate", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for TrafficPolicy {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.namespace.is_empty() {
            len += 1;
        }
        if !self.name.is_empty() {
            len += 1;
        }
        if self.created != 0 {
            len += 1;
        }
        if !self.targets.is_empty() {
            len += 1;
        }
        if self.outlier_detection.is_some() {
            len += 1;
        }
        if self.connection_pool.is_some() {
            len += 1;
        }
        if self.rate_limit.is_some() {
            len += 1;
        }
        if self.fault_injection.is_some() {
            len += 1;
        }
        if self.timeouts.is_some() {
            len += 1;
        }
        if self.max_request_body_bytes != 0 {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.TrafficPolicy", len)?;
        if !self.namespace.is_empty() {
            struct_ser.serialize_field("namespace", &self.namespace)?;
        }
        if !self.name.is_empty() {
            struct_ser.serialize_field("name", &self.name)?;
        }
        if self.created != 0 {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("created", ToString::to_string(&self.created).as_str())?;
        }
        if !self.targets.is_empty() {
            struct_ser.serialize_field("targets", &self.targets)?;
        }
        if let Some(v) = self.outlier_detection.as_ref() {
            struct_ser.serialize_field("outlierDetection", v)?;
        }
        if let Some(v) = self.connection_pool.as_ref() {
            struct_ser.serialize_field("connectionPool", v)?;
        }
        if let Some(v) = self.rate_limit.as_ref() {
            struct_ser.serialize_field("rateLimit", v)?;
        }
        if let Some(v) = self.fault_injection.as_ref() {
            struct_ser.serialize_field("faultInjection", v)?;
        }
        if let Some(v) = self.timeouts.as_ref() {
            struct_ser.serialize_field("timeouts", v)?;
        }
        if self.max_request_body_bytes != 0 {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("maxRequestBodyBytes", ToString::to_string(&self.max_request_body_bytes).as_str())?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for TrafficPolicy {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "namespace",
            "name",
            "created",
            "targets",
            "outlier_detection",
            "outlierDetection",
            "connection_pool",
            "connectionPool",
            "rate_limit",
            "rateLimit",
            "fault_injection",
            "faultInjection",
            "timeouts",
            "max_request_body_bytes",
            "maxRequestBodyBytes",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Namespace,
            Name,
            Created,
            Targets,
            OutlierDetection,
            ConnectionPool,
            RateLimit,
            FaultInjection,
            Timeouts,
            MaxRequestBodyBytes,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "namespace" => Ok(GeneratedField::Namespace),
                            "name" => Ok(GeneratedField::Name),
                            "created" => Ok(GeneratedField::Created),
                            "targets" => Ok(GeneratedField::Targets),
                            "outlierDetection" | "outlier_detection" => Ok(GeneratedField::OutlierDetection),
                            "connectionPool" | "connection_pool" => Ok(GeneratedField::ConnectionPool),
                            "rateLimit" | "rate_limit" => Ok(GeneratedField::RateLimit),
                            "faultInjection" | "fault_injection" => Ok(GeneratedField::FaultInjection),
                            "timeouts" => Ok(GeneratedField::Timeouts),
                            "maxRequestBodyBytes" | "max_request_body_bytes" => Ok(GeneratedField::MaxRequestBodyBytes),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = TrafficPolicy;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.TrafficPolicy")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<TrafficPolicy, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut namespace__ = None;
                let mut name__ = None;
                let mut created__ = None;
                let mut targets__ = None;
                let mut outlier_detection__ = None;
                let mut connection_pool__ = None;
                let mut rate_limit__ = None;
                let mut fault_injection__ = None;
                let mut timeouts__ = None;
                let mut max_request_body_bytes__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Namespace => {
                            if namespace__.is_some() {
                                return Err(serde::de::Error::duplicate_field("namespace"));
                            }
                            namespace__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Name => {
                            if name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("name"));
                            }
                            name__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Created => {
                            if created__.is_some() {
                                return Err(serde::de::Error::duplicate_field("created"));
                            }
                            created__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::Targets => {
                            if targets__.is_some() {
                                return Err(serde::de::Error::duplicate_field("targets"));
                            }
                            targets__ = Some(map_.next_value()?);
                        }
                        GeneratedField::OutlierDetection => {
                            if outlier_detection__.is_some() {
                                return Err(serde::de::Error::duplicate_field("outlierDetection"));
                            }
                            outlier_detection__ = map_.next_value()?;
                        }
                        GeneratedField::ConnectionPool => {
                            if connection_pool__.is_some() {
                                return Err(serde::de::Error::duplicate_field("connectionPool"));
                            }
                            connection_pool__ = map_.next_value()?;
                        }
                        GeneratedField::RateLimit => {
                            if rate_limit__.is_some() {
                                return Err(serde::de::Error::duplicate_field("rateLimit"));
                            }
                            rate_limit__ = map_.next_value()?;
                        }
                        GeneratedField::FaultInjection => {
                            if fault_injection__.is_some() {
                                return Err(serde::de::Error::duplicate_field("faultInjection"));
                            }
                            fault_injection__ = map_.next_value()?;
                        }
                        GeneratedField::Timeouts => {
                            if timeouts__.is_some() {
                                return Err(serde::de::Error::duplicate_field("timeouts"));
                            }
                            timeouts__ = map_.next_value()?;
                        }
                        GeneratedField::MaxRequestBodyBytes => {
                            if max_request_body_bytes__.is_some() {
                                return Err(serde::de::Error::duplicate_field("maxRequestBodyBytes"));
                            }
                            max_request_body_bytes__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                    }
                }
                Ok(TrafficPolicy {
                    namespace: namespace__.unwrap_or_default(),
                    name: name__.unwrap_or_default(),
                    created: created__.unwrap_or_default(),
                    targets: targets__.unwrap_or_default(),
                    outlier_detection: outlier_detection__,
                    connection_pool: connection_pool__,
                    rate_limit: rate_limit__,
                    fault_injection: fault_injection__,
                    timeouts: timeouts__,
                    max_request_body_bytes: max_request_body_bytes__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.TrafficPolicy", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for TrafficTarget {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.service.is_empty() {
            len += 1;
        }
        if self.port != 0 {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.TrafficTarget", len)?;
        if !self.service.is_empty() {
            struct_ser.serialize_field("service", &self.service)?;
        }
        if self.port != 0 {
            struct_ser.serialize_field("port", &self.port)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for TrafficTarget {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "service",
            "port",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Service,
            Port,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "service" => Ok(GeneratedField::Service),
                            "port" => Ok(GeneratedField::Port),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = TrafficTarget;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.TrafficTarget")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<TrafficTarget, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut service__ = None;
                let mut port__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Service => {
                            if service__.is_some() {
                                return Err(serde::de::Error::duplicate_field("service"));
                            }
                            service__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Port => {
                            if port__.is_some() {
                                return Err(serde::de::Error::duplicate_field("port"));
                            }
                            port__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                    }
                }
                Ok(TrafficTarget {
                    service: service__.unwrap_or_default(),
                    port: port__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.TrafficTarget", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for TrafficTimeouts {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if self.connect_ms != 0 {
            len += 1;
        }
        if self.idle_ms != 0 {
            len += 1;
        }
        if self.request_ms != 0 {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.TrafficTimeouts", len)?;
        if self.connect_ms != 0 {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("connectMs", ToString::to_string(&self.connect_ms).as_str())?;
        }
        if self.idle_ms != 0 {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("idleMs", ToString::to_string(&self.idle_ms).as_str())?;
        }
        if self.request_ms != 0 {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("requestMs", ToString::to_string(&self.request_ms).as_str())?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for TrafficTimeouts {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "connect_ms",
            "connectMs",
            "idle_ms",
            "idleMs",
            "request_ms",
            "requestMs",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            ConnectMs,
            IdleMs,
            RequestMs,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "connectMs" | "connect_ms" => Ok(GeneratedField::ConnectMs),
                            "idleMs" | "idle_ms" => Ok(GeneratedField::IdleMs),
                            "requestMs" | "request_ms" => Ok(GeneratedField::RequestMs),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = TrafficTimeouts;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.TrafficTimeouts")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<TrafficTimeouts, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut connect_ms__ = None;
                let mut idle_ms__ = None;
                let mut request_ms__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::ConnectMs => {
                            if connect_ms__.is_some() {
                                return Err(serde::de::Error::duplicate_field("connectMs"));
                            }
                            connect_ms__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::IdleMs => {
                            if idle_ms__.is_some() {
                                return Err(serde::de::Error::duplicate_field("idleMs"));
                            }
                            idle_ms__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::RequestMs => {
                            if request_ms__.is_some() {
                                return Err(serde::de::Error::duplicate_field("requestMs"));
                            }
                            request_ms__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                    }
                }
                Ok(TrafficTimeouts {
                    connect_ms: connect_ms__.unwrap_or_default(),
                    idle_ms: idle_ms__.unwrap_or_default(),
                    request_ms: request_ms__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.TrafficTimeouts", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for TrustBundle {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.trust_domain.is_empty() {
            len += 1;
        }
        if !self.roots.is_empty() {
            len += 1;
        }
        if self.sequence != 0 {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.TrustBundle", len)?;
        if !self.trust_domain.is_empty() {
            struct_ser.serialize_field("trustDomain", &self.trust_domain)?;
        }
        if !self.roots.is_empty() {
            struct_ser.serialize_field("roots", &self.roots.iter().map(pbjson::private::base64::encode).collect::<Vec<_>>())?;
        }
        if self.sequence != 0 {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("sequence", ToString::to_string(&self.sequence).as_str())?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for TrustBundle {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "trust_domain",
            "trustDomain",
            "roots",
            "sequence",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            TrustDomain,
            Roots,
            Sequence,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "trustDomain" | "trust_domain" => Ok(GeneratedField::TrustDomain),
                            "roots" => Ok(GeneratedField::Roots),
                            "sequence" => Ok(GeneratedField::Sequence),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = TrustBundle;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.TrustBundle")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<TrustBundle, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut trust_domain__ = None;
                let mut roots__ = None;
                let mut sequence__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::TrustDomain => {
                            if trust_domain__.is_some() {
                                return Err(serde::de::Error::duplicate_field("trustDomain"));
                            }
                            trust_domain__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Roots => {
                            if roots__.is_some() {
                                return Err(serde::de::Error::duplicate_field("roots"));
                            }
                            roots__ = 
                                Some(map_.next_value::<Vec<::pbjson::private::BytesDeserialize<_>>>()?
                                    .into_iter().map(|x| x.0).collect())
                            ;
                        }
                        GeneratedField::Sequence => {
                            if sequence__.is_some() {
                                return Err(serde::de::Error::duplicate_field("sequence"));
                            }
                            sequence__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                    }
                }
                Ok(TrustBundle {
                    trust_domain: trust_domain__.unwrap_or_default(),
                    roots: roots__.unwrap_or_default(),
                    sequence: sequence__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.TrustBundle", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for Update {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.nonce.is_empty() {
            len += 1;
        }
        if self.version != 0 {
            len += 1;
        }
        if self.full {
            len += 1;
        }
        if !self.resources.is_empty() {
            len += 1;
        }
        if !self.removed.is_empty() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.Update", len)?;
        if !self.nonce.is_empty() {
            struct_ser.serialize_field("nonce", &self.nonce)?;
        }
        if self.version != 0 {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("version", ToString::to_string(&self.version).as_str())?;
        }
        if self.full {
            struct_ser.serialize_field("full", &self.full)?;
        }
        if !self.resources.is_empty() {
            struct_ser.serialize_field("resources", &self.resources)?;
        }
        if !self.removed.is_empty() {
            struct_ser.serialize_field("removed", &self.removed)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for Update {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "nonce",
            "version",
            "full",
            "resources",
            "removed",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Nonce,
            Version,
            Full,
            Resources,
            Removed,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "nonce" => Ok(GeneratedField::Nonce),
                            "version" => Ok(GeneratedField::Version),
                            "full" => Ok(GeneratedField::Full),
                            "resources" => Ok(GeneratedField::Resources),
                            "removed" => Ok(GeneratedField::Removed),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = Update;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.Update")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<Update, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut nonce__ = None;
                let mut version__ = None;
                let mut full__ = None;
                let mut resources__ = None;
                let mut removed__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Nonce => {
                            if nonce__.is_some() {
                                return Err(serde::de::Error::duplicate_field("nonce"));
                            }
                            nonce__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Version => {
                            if version__.is_some() {
                                return Err(serde::de::Error::duplicate_field("version"));
                            }
                            version__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::Full => {
                            if full__.is_some() {
                                return Err(serde::de::Error::duplicate_field("full"));
                            }
                            full__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Resources => {
                            if resources__.is_some() {
                                return Err(serde::de::Error::duplicate_field("resources"));
                            }
                            resources__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Removed => {
                            if removed__.is_some() {
                                return Err(serde::de::Error::duplicate_field("removed"));
                            }
                            removed__ = Some(map_.next_value()?);
                        }
                    }
                }
                Ok(Update {
                    nonce: nonce__.unwrap_or_default(),
                    version: version__.unwrap_or_default(),
                    full: full__.unwrap_or_default(),
                    resources: resources__.unwrap_or_default(),
                    removed: removed__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.Update", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ValueMatch {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.name.is_empty() {
            len += 1;
        }
        if !self.value.is_empty() {
            len += 1;
        }
        if self.regex {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.ValueMatch", len)?;
        if !self.name.is_empty() {
            struct_ser.serialize_field("name", &self.name)?;
        }
        if !self.value.is_empty() {
            struct_ser.serialize_field("value", &self.value)?;
        }
        if self.regex {
            struct_ser.serialize_field("regex", &self.regex)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ValueMatch {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "name",
            "value",
            "regex",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Name,
            Value,
            Regex,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "name" => Ok(GeneratedField::Name),
                            "value" => Ok(GeneratedField::Value),
                            "regex" => Ok(GeneratedField::Regex),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ValueMatch;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.ValueMatch")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ValueMatch, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut name__ = None;
                let mut value__ = None;
                let mut regex__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Name => {
                            if name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("name"));
                            }
                            name__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Value => {
                            if value__.is_some() {
                                return Err(serde::de::Error::duplicate_field("value"));
                            }
                            value__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Regex => {
                            if regex__.is_some() {
                                return Err(serde::de::Error::duplicate_field("regex"));
                            }
                            regex__ = Some(map_.next_value()?);
                        }
                    }
                }
                Ok(ValueMatch {
                    name: name__.unwrap_or_default(),
                    value: value__.unwrap_or_default(),
                    regex: regex__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.ValueMatch", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for Waypoint {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.namespace.is_empty() {
            len += 1;
        }
        if !self.name.is_empty() {
            len += 1;
        }
        if !self.identity.is_empty() {
            len += 1;
        }
        if !self.addresses.is_empty() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.Waypoint", len)?;
        if !self.namespace.is_empty() {
            struct_ser.serialize_field("namespace", &self.namespace)?;
        }
        if !self.name.is_empty() {
            struct_ser.serialize_field("name", &self.name)?;
        }
        if !self.identity.is_empty() {
            struct_ser.serialize_field("identity", &self.identity)?;
        }
        if !self.addresses.is_empty() {
            struct_ser.serialize_field("addresses", &self.addresses)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for Waypoint {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "namespace",
            "name",
            "identity",
            "addresses",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Namespace,
            Name,
            Identity,
            Addresses,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "namespace" => Ok(GeneratedField::Namespace),
                            "name" => Ok(GeneratedField::Name),
                            "identity" => Ok(GeneratedField::Identity),
                            "addresses" => Ok(GeneratedField::Addresses),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = Waypoint;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.Waypoint")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<Waypoint, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut namespace__ = None;
                let mut name__ = None;
                let mut identity__ = None;
                let mut addresses__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Namespace => {
                            if namespace__.is_some() {
                                return Err(serde::de::Error::duplicate_field("namespace"));
                            }
                            namespace__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Name => {
                            if name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("name"));
                            }
                            name__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Identity => {
                            if identity__.is_some() {
                                return Err(serde::de::Error::duplicate_field("identity"));
                            }
                            identity__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Addresses => {
                            if addresses__.is_some() {
                                return Err(serde::de::Error::duplicate_field("addresses"));
                            }
                            addresses__ = Some(map_.next_value()?);
                        }
                    }
                }
                Ok(Waypoint {
                    namespace: namespace__.unwrap_or_default(),
                    name: name__.unwrap_or_default(),
                    identity: identity__.unwrap_or_default(),
                    addresses: addresses__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.Waypoint", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for Workload {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if !self.uid.is_empty() {
            len += 1;
        }
        if !self.name.is_empty() {
            len += 1;
        }
        if !self.namespace.is_empty() {
            len += 1;
        }
        if !self.service_account.is_empty() {
            len += 1;
        }
        if !self.node.is_empty() {
            len += 1;
        }
        if !self.ips.is_empty() {
            len += 1;
        }
        if self.ready {
            len += 1;
        }
        if self.in_mesh {
            len += 1;
        }
        if !self.identity.is_empty() {
            len += 1;
        }
        if self.mtls_mode != 0 {
            len += 1;
        }
        if !self.authorization_policies.is_empty() {
            len += 1;
        }
        if !self.waypoints.is_empty() {
            len += 1;
        }
        if self.waypoint.is_some() {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("quicmesh.config.v1.Workload", len)?;
        if !self.uid.is_empty() {
            struct_ser.serialize_field("uid", &self.uid)?;
        }
        if !self.name.is_empty() {
            struct_ser.serialize_field("name", &self.name)?;
        }
        if !self.namespace.is_empty() {
            struct_ser.serialize_field("namespace", &self.namespace)?;
        }
        if !self.service_account.is_empty() {
            struct_ser.serialize_field("serviceAccount", &self.service_account)?;
        }
        if !self.node.is_empty() {
            struct_ser.serialize_field("node", &self.node)?;
        }
        if !self.ips.is_empty() {
            struct_ser.serialize_field("ips", &self.ips)?;
        }
        if self.ready {
            struct_ser.serialize_field("ready", &self.ready)?;
        }
        if self.in_mesh {
            struct_ser.serialize_field("inMesh", &self.in_mesh)?;
        }
        if !self.identity.is_empty() {
            struct_ser.serialize_field("identity", &self.identity)?;
        }
        if self.mtls_mode != 0 {
            let v = MtlsMode::try_from(self.mtls_mode)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.mtls_mode)))?;
            struct_ser.serialize_field("mtlsMode", &v)?;
        }
        if !self.authorization_policies.is_empty() {
            struct_ser.serialize_field("authorizationPolicies", &self.authorization_policies)?;
        }
        if !self.waypoints.is_empty() {
            struct_ser.serialize_field("waypoints", &self.waypoints)?;
        }
        if let Some(v) = self.waypoint.as_ref() {
            struct_ser.serialize_field("waypoint", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for Workload {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "uid",
            "name",
            "namespace",
            "service_account",
            "serviceAccount",
            "node",
            "ips",
            "ready",
            "in_mesh",
            "inMesh",
            "identity",
            "mtls_mode",
            "mtlsMode",
            "authorization_policies",
            "authorizationPolicies",
            "waypoints",
            "waypoint",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Uid,
            Name,
            Namespace,
            ServiceAccount,
            Node,
            Ips,
            Ready,
            InMesh,
            Identity,
            MtlsMode,
            AuthorizationPolicies,
            Waypoints,
            Waypoint,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "uid" => Ok(GeneratedField::Uid),
                            "name" => Ok(GeneratedField::Name),
                            "namespace" => Ok(GeneratedField::Namespace),
                            "serviceAccount" | "service_account" => Ok(GeneratedField::ServiceAccount),
                            "node" => Ok(GeneratedField::Node),
                            "ips" => Ok(GeneratedField::Ips),
                            "ready" => Ok(GeneratedField::Ready),
                            "inMesh" | "in_mesh" => Ok(GeneratedField::InMesh),
                            "identity" => Ok(GeneratedField::Identity),
                            "mtlsMode" | "mtls_mode" => Ok(GeneratedField::MtlsMode),
                            "authorizationPolicies" | "authorization_policies" => Ok(GeneratedField::AuthorizationPolicies),
                            "waypoints" => Ok(GeneratedField::Waypoints),
                            "waypoint" => Ok(GeneratedField::Waypoint),
                            _ => Err(serde::de::Error::unknown_field(value, FIELDS)),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = Workload;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct quicmesh.config.v1.Workload")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<Workload, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut uid__ = None;
                let mut name__ = None;
                let mut namespace__ = None;
                let mut service_account__ = None;
                let mut node__ = None;
                let mut ips__ = None;
                let mut ready__ = None;
                let mut in_mesh__ = None;
                let mut identity__ = None;
                let mut mtls_mode__ = None;
                let mut authorization_policies__ = None;
                let mut waypoints__ = None;
                let mut waypoint__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Uid => {
                            if uid__.is_some() {
                                return Err(serde::de::Error::duplicate_field("uid"));
                            }
                            uid__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Name => {
                            if name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("name"));
                            }
                            name__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Namespace => {
                            if namespace__.is_some() {
                                return Err(serde::de::Error::duplicate_field("namespace"));
                            }
                            namespace__ = Some(map_.next_value()?);
                        }
                        GeneratedField::ServiceAccount => {
                            if service_account__.is_some() {
                                return Err(serde::de::Error::duplicate_field("serviceAccount"));
                            }
                            service_account__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Node => {
                            if node__.is_some() {
                                return Err(serde::de::Error::duplicate_field("node"));
                            }
                            node__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Ips => {
                            if ips__.is_some() {
                                return Err(serde::de::Error::duplicate_field("ips"));
                            }
                            ips__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Ready => {
                            if ready__.is_some() {
                                return Err(serde::de::Error::duplicate_field("ready"));
                            }
                            ready__ = Some(map_.next_value()?);
                        }
                        GeneratedField::InMesh => {
                            if in_mesh__.is_some() {
                                return Err(serde::de::Error::duplicate_field("inMesh"));
                            }
                            in_mesh__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Identity => {
                            if identity__.is_some() {
                                return Err(serde::de::Error::duplicate_field("identity"));
                            }
                            identity__ = Some(map_.next_value()?);
                        }
                        GeneratedField::MtlsMode => {
                            if mtls_mode__.is_some() {
                                return Err(serde::de::Error::duplicate_field("mtlsMode"));
                            }
                            mtls_mode__ = Some(map_.next_value::<MtlsMode>()? as i32);
                        }
                        GeneratedField::AuthorizationPolicies => {
                            if authorization_policies__.is_some() {
                                return Err(serde::de::Error::duplicate_field("authorizationPolicies"));
                            }
                            authorization_policies__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Waypoints => {
                            if waypoints__.is_some() {
                                return Err(serde::de::Error::duplicate_field("waypoints"));
                            }
                            waypoints__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Waypoint => {
                            if waypoint__.is_some() {
                                return Err(serde::de::Error::duplicate_field("waypoint"));
                            }
                            waypoint__ = map_.next_value()?;
                        }
                    }
                }
                Ok(Workload {
                    uid: uid__.unwrap_or_default(),
                    name: name__.unwrap_or_default(),
                    namespace: namespace__.unwrap_or_default(),
                    service_account: service_account__.unwrap_or_default(),
                    node: node__.unwrap_or_default(),
                    ips: ips__.unwrap_or_default(),
                    ready: ready__.unwrap_or_default(),
                    in_mesh: in_mesh__.unwrap_or_default(),
                    identity: identity__.unwrap_or_default(),
                    mtls_mode: mtls_mode__.unwrap_or_default(),
                    authorization_policies: authorization_policies__.unwrap_or_default(),
                    waypoints: waypoints__.unwrap_or_default(),
                    waypoint: waypoint__,
                })
            }
        }
        deserializer.deserialize_struct("quicmesh.config.v1.Workload", FIELDS, GeneratedVisitor)
    }
}
