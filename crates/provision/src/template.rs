//! `template.yaml` as data: a CloudFormation/SAM template parsed with its short-form tags
//! (`!Ref`, `!GetAtt`, `!Sub`, ...) and the intrinsic functions the local provisioner needs,
//! resolved against a local stack (a prefix as the stack name, an account, a region).
//!
//! Only what is read gets resolved, so a template may use functions this module does not know
//! in places the provisioner never looks at (key policies, `Rules`); where it does look, an
//! unsupported function is an error naming the function and the path.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value as Json;
use serde_yaml_ng::{Mapping, Value as Yaml};

/// Why a template cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{name} is not valid YAML: {source}")]
    Yaml {
        name: String,
        source: serde_yaml_ng::Error,
    },
    #[error("{at}: {message}")]
    Invalid { at: String, message: String },
    #[error(
        "{at}: the intrinsic function {function} is not supported locally (supported: Ref, GetAtt, Sub, If, Equals, Not, And, Or, Condition, Join, Select, Split)"
    )]
    Unsupported { at: String, function: String },
    #[error("{at}: {name:?} is neither a parameter, a resource nor a pseudo parameter")]
    UnknownRef { at: String, name: String },
    #[error("{at}: {resource} is a {kind}, which has no local equivalent for {what}")]
    NotLocal {
        at: String,
        resource: String,
        kind: String,
        what: String,
    },
    #[error(
        "{at}: parameter {name} has no default; pass a value for it (--parameter {name}=VALUE)"
    )]
    NoParameterValue { at: String, name: String },
}

fn invalid(at: &str, message: impl Into<String>) -> TemplateError {
    TemplateError::Invalid {
        at: at.to_owned(),
        message: message.into(),
    }
}

/// A parsed template.
#[derive(Clone, Debug)]
pub struct Template {
    name: String,
    root: Mapping,
}

impl Template {
    pub fn load(path: &Path) -> Result<Template, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Template::parse(&path.display().to_string(), &text)
    }

    pub fn parse(name: &str, text: &str) -> Result<Template, TemplateError> {
        let root: Yaml = serde_yaml_ng::from_str(text).map_err(|source| TemplateError::Yaml {
            name: name.to_owned(),
            source,
        })?;
        match root {
            Yaml::Mapping(root) => Ok(Template {
                name: name.to_owned(),
                root,
            }),
            _ => Err(invalid(name, "the template is not a mapping")),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A top-level section (`Parameters`, `Resources`, `Globals`, ...).
    pub fn section(&self, name: &str) -> Option<&Mapping> {
        self.root.get(name).and_then(Yaml::as_mapping)
    }

    /// Every resource as (logical id, type), in template order.
    pub fn resources(&self) -> Vec<(String, String)> {
        self.section("Resources")
            .into_iter()
            .flat_map(|m| m.iter())
            .filter_map(|(k, v)| {
                Some((k.as_str()?.to_owned(), v.get("Type")?.as_str()?.to_owned()))
            })
            .collect()
    }

    /// The logical ids of the resources of one type.
    pub fn resources_of(&self, kind: &str) -> Vec<String> {
        self.resources()
            .into_iter()
            .filter(|(_, t)| t == kind)
            .map(|(id, _)| id)
            .collect()
    }

    pub fn resource_type(&self, id: &str) -> Option<&str> {
        self.resource(id)?.get("Type")?.as_str()
    }

    pub fn resource(&self, id: &str) -> Option<&Yaml> {
        self.section("Resources")?.get(id)
    }

    /// A resource's `Properties` (unresolved).
    pub fn properties(&self, id: &str) -> Option<&Yaml> {
        self.resource(id)?.get("Properties")
    }
}

/// What a local stack stands on: the prefix doubles as the stack name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackContext {
    pub stack_name: String,
    pub account_id: String,
    pub region: String,
    pub partition: String,
}

/// Resource types and how they are named locally.
pub mod kinds {
    pub const QUEUE: &str = "AWS::SQS::Queue";
    pub const QUEUE_POLICY: &str = "AWS::SQS::QueuePolicy";
    pub const TABLE: &str = "AWS::DynamoDB::Table";
    pub const BUS: &str = "AWS::Events::EventBus";
    pub const RULE: &str = "AWS::Events::Rule";
    pub const FUNCTION: &str = "AWS::Serverless::Function";
}

/// Resolves intrinsic functions against a local stack.
pub struct Resolver<'a> {
    template: &'a Template,
    ctx: &'a StackContext,
    parameters: BTreeMap<String, String>,
    queue_urls: BTreeMap<String, String>,
    depth: Cell<u32>,
}

const MAX_DEPTH: u32 = 64;

/// `AWS::NoValue` removes the member or element it is the value of.
type Resolved = Option<Json>;

impl<'a> Resolver<'a> {
    /// `parameters` override the template's defaults.
    pub fn new(
        template: &'a Template,
        ctx: &'a StackContext,
        parameters: &BTreeMap<String, String>,
    ) -> Resolver<'a> {
        Resolver {
            template,
            ctx,
            parameters: parameters.clone(),
            queue_urls: BTreeMap::new(),
            depth: Cell::new(0),
        }
    }

    pub fn template(&self) -> &Template {
        self.template
    }

    pub fn context(&self) -> &StackContext {
        self.ctx
    }

    /// Records a queue's URL, known once it exists (`!Ref` of a queue is its URL).
    pub fn set_queue_url(&mut self, logical_id: &str, url: &str) {
        self.queue_urls
            .insert(logical_id.to_owned(), url.to_owned());
    }

    /// The value of a template parameter: the override, else the default.
    pub fn parameter(&self, name: &str, at: &str) -> Result<Json, TemplateError> {
        let decl = self
            .template
            .section("Parameters")
            .and_then(|p| p.get(name))
            .ok_or_else(|| TemplateError::UnknownRef {
                at: at.to_owned(),
                name: name.to_owned(),
            })?;
        let text = match self.parameters.get(name) {
            Some(v) => v.clone(),
            None => match decl.get("Default") {
                Some(d) => scalar_text(d).ok_or_else(|| {
                    invalid(at, format!("parameter {name}'s default is not a scalar"))
                })?,
                None => {
                    return Err(TemplateError::NoParameterValue {
                        at: at.to_owned(),
                        name: name.to_owned(),
                    });
                }
            },
        };
        let kind = decl.get("Type").and_then(Yaml::as_str).unwrap_or("String");
        if kind == "CommaDelimitedList" || kind.starts_with("List<") {
            Ok(Json::Array(
                text.split(',')
                    .map(|s| Json::String(s.trim().to_owned()))
                    .collect(),
            ))
        } else {
            Ok(Json::String(text))
        }
    }

    /// The local physical name of a resource: its explicit name property when it has one,
    /// else `<prefix>-<LogicalId>`.
    pub fn physical_name(&self, id: &str) -> Result<String, TemplateError> {
        let at = format!("Resources.{id}");
        let kind = self
            .template
            .resource_type(id)
            .ok_or_else(|| TemplateError::UnknownRef {
                at: at.clone(),
                name: id.to_owned(),
            })?;
        let name_property = match kind {
            kinds::QUEUE => Some("QueueName"),
            kinds::TABLE => Some("TableName"),
            kinds::BUS => Some("Name"),
            kinds::RULE => Some("Name"),
            kinds::FUNCTION => Some("FunctionName"),
            _ => None,
        };
        if let Some(p) = name_property
            && let Some(v) = self.template.properties(id).and_then(|props| props.get(p))
        {
            return match self.resolve(v, &format!("{at}.Properties.{p}"))? {
                Some(Json::String(s)) if !s.is_empty() => Ok(s),
                _ => Err(invalid(&at, format!("{p} does not resolve to a name"))),
            };
        }
        if kind == kinds::BUS {
            return Err(invalid(&at, "an event bus needs a Name"));
        }
        Ok(format!("{}-{id}", self.ctx.stack_name))
    }

    /// The ARN of a queue, table, bus, rule or function.
    pub fn arn(&self, id: &str, at: &str) -> Result<String, TemplateError> {
        let c = self.ctx;
        let (p, r, a) = (&c.partition, &c.region, &c.account_id);
        let name = self.physical_name(id)?;
        let kind = self.template.resource_type(id).unwrap_or_default();
        Ok(match kind {
            kinds::QUEUE => format!("arn:{p}:sqs:{r}:{a}:{name}"),
            kinds::TABLE => format!("arn:{p}:dynamodb:{r}:{a}:table/{name}"),
            kinds::BUS => format!("arn:{p}:events:{r}:{a}:event-bus/{name}"),
            kinds::RULE => {
                let bus = self.rule_bus(id)?;
                if bus == "default" {
                    format!("arn:{p}:events:{r}:{a}:rule/{name}")
                } else {
                    format!("arn:{p}:events:{r}:{a}:rule/{bus}/{name}")
                }
            }
            kinds::FUNCTION => format!("arn:{p}:lambda:{r}:{a}:function:{name}"),
            other => {
                return Err(TemplateError::NotLocal {
                    at: at.to_owned(),
                    resource: id.to_owned(),
                    kind: other.to_owned(),
                    what: "an ARN".into(),
                });
            }
        })
    }

    /// The bus a rule is on (`default` when the rule names none).
    pub fn rule_bus(&self, id: &str) -> Result<String, TemplateError> {
        let at = format!("Resources.{id}.Properties.EventBusName");
        match self
            .template
            .properties(id)
            .and_then(|p| p.get("EventBusName"))
        {
            None => Ok("default".to_owned()),
            Some(v) => match self.resolve(v, &at)? {
                Some(Json::String(s)) => Ok(s
                    .rsplit_once("event-bus/")
                    .map(|(_, n)| n.to_owned())
                    .unwrap_or(s)),
                _ => Err(invalid(&at, "does not resolve to a bus name")),
            },
        }
    }

    fn ref_value(&self, name: &str, at: &str) -> Result<Resolved, TemplateError> {
        let c = self.ctx;
        let pseudo = match name {
            "AWS::NoValue" => return Ok(None),
            "AWS::StackName" => Some(c.stack_name.clone()),
            "AWS::AccountId" => Some(c.account_id.clone()),
            "AWS::Region" => Some(c.region.clone()),
            "AWS::Partition" => Some(c.partition.clone()),
            "AWS::URLSuffix" => Some("amazonaws.com".to_owned()),
            "AWS::StackId" => Some(format!(
                "arn:{}:cloudformation:{}:{}:stack/{}/local",
                c.partition, c.region, c.account_id, c.stack_name
            )),
            _ => None,
        };
        if let Some(v) = pseudo {
            return Ok(Some(Json::String(v)));
        }
        if let Some(kind) = self.template.resource_type(name) {
            let v = match kind {
                kinds::QUEUE => self.queue_urls.get(name).cloned().ok_or_else(|| {
                    invalid(
                        at,
                        format!("the URL of queue {name} is not known before it exists"),
                    )
                })?,
                kinds::TABLE | kinds::BUS | kinds::RULE | kinds::FUNCTION => {
                    self.physical_name(name)?
                }
                other => {
                    return Err(TemplateError::NotLocal {
                        at: at.to_owned(),
                        resource: name.to_owned(),
                        kind: other.to_owned(),
                        what: "!Ref".into(),
                    });
                }
            };
            return Ok(Some(Json::String(v)));
        }
        self.parameter(name, at).map(Some)
    }

    fn get_att(&self, id: &str, attribute: &str, at: &str) -> Result<Json, TemplateError> {
        let kind = self
            .template
            .resource_type(id)
            .ok_or_else(|| TemplateError::UnknownRef {
                at: at.to_owned(),
                name: id.to_owned(),
            })?;
        let v = match (kind, attribute) {
            (_, "Arn") => self.arn(id, at)?,
            (kinds::QUEUE, "QueueName") | (kinds::BUS, "Name") => self.physical_name(id)?,
            (kinds::QUEUE, "QueueUrl") => self.queue_urls.get(id).cloned().ok_or_else(|| {
                invalid(
                    at,
                    format!("the URL of queue {id} is not known before it exists"),
                )
            })?,
            _ => {
                return Err(TemplateError::NotLocal {
                    at: at.to_owned(),
                    resource: id.to_owned(),
                    kind: kind.to_owned(),
                    what: format!("!GetAtt {id}.{attribute}"),
                });
            }
        };
        Ok(Json::String(v))
    }

    /// Evaluates a named condition of the `Conditions` section.
    pub fn condition(&self, name: &str, at: &str) -> Result<bool, TemplateError> {
        let decl = self
            .template
            .section("Conditions")
            .and_then(|c| c.get(name))
            .ok_or_else(|| invalid(at, format!("no condition named {name:?}")))?;
        self.boolean(decl, &format!("Conditions.{name}"))
    }

    fn boolean(&self, v: &Yaml, at: &str) -> Result<bool, TemplateError> {
        match self.resolve(v, at)? {
            Some(Json::Bool(b)) => Ok(b),
            Some(Json::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
            _ => Err(invalid(at, "is not a condition (true or false)")),
        }
    }

    /// Resolves a value with its intrinsic functions. `None` is `AWS::NoValue`.
    pub fn resolve(&self, v: &Yaml, at: &str) -> Result<Resolved, TemplateError> {
        let depth = self.depth.get();
        if depth >= MAX_DEPTH {
            return Err(invalid(at, "references nest too deeply (a cycle?)"));
        }
        self.depth.set(depth + 1);
        let result = self.resolve_inner(v, at);
        self.depth.set(depth);
        result
    }

    fn resolve_inner(&self, v: &Yaml, at: &str) -> Result<Resolved, TemplateError> {
        Ok(Some(match v {
            Yaml::Null => Json::Null,
            Yaml::Bool(b) => Json::Bool(*b),
            Yaml::Number(n) => serde_json::to_value(n).unwrap_or(Json::Null),
            Yaml::String(s) => Json::String(s.clone()),
            Yaml::Sequence(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    if let Some(x) = self.resolve(item, &format!("{at}[{i}]"))? {
                        out.push(x);
                    }
                }
                Json::Array(out)
            }
            Yaml::Mapping(m) => {
                if m.len() == 1
                    && let Some((Yaml::String(k), arg)) = m.iter().next()
                    && (k == "Ref" || k == "Condition" || k.starts_with("Fn::"))
                {
                    let name = k.strip_prefix("Fn::").unwrap_or(k);
                    return self.intrinsic(name, arg, at);
                }
                let mut out = serde_json::Map::new();
                for (k, val) in m {
                    let key = scalar_text(k).ok_or_else(|| invalid(at, "a key is not a scalar"))?;
                    if let Some(x) = self.resolve(val, &format!("{at}.{key}"))? {
                        out.insert(key, x);
                    }
                }
                Json::Object(out)
            }
            Yaml::Tagged(t) => {
                let tag = t.tag.to_string();
                let name = tag.trim_start_matches('!');
                let name = name.strip_prefix("Fn::").unwrap_or(name);
                return self.intrinsic(name, &t.value, at);
            }
        }))
    }

    fn args<'y>(
        &self,
        name: &str,
        arg: &'y Yaml,
        n: usize,
        at: &str,
    ) -> Result<&'y [Yaml], TemplateError> {
        match arg {
            Yaml::Sequence(s) if s.len() == n => Ok(s.as_slice()),
            _ => Err(invalid(at, format!("!{name} takes a list of {n}"))),
        }
    }

    fn string(&self, v: &Yaml, at: &str) -> Result<String, TemplateError> {
        match self.resolve(v, at)? {
            Some(j) => json_text(&j).ok_or_else(|| invalid(at, "is not a string")),
            None => Err(invalid(at, "is AWS::NoValue where a string is needed")),
        }
    }

    fn intrinsic(&self, name: &str, arg: &Yaml, at: &str) -> Result<Resolved, TemplateError> {
        let at = &format!("{at}(!{name})");
        match name {
            "Ref" => {
                let target = arg
                    .as_str()
                    .ok_or_else(|| invalid(at, "!Ref takes a name"))?;
                self.ref_value(target, at)
            }
            "GetAtt" => {
                let (id, attribute) = match arg {
                    Yaml::String(s) => s
                        .split_once('.')
                        .map(|(a, b)| (a.to_owned(), b.to_owned()))
                        .ok_or_else(|| invalid(at, "!GetAtt takes Resource.Attribute"))?,
                    Yaml::Sequence(s) if s.len() == 2 => {
                        (self.string(&s[0], at)?, self.string(&s[1], at)?)
                    }
                    _ => return Err(invalid(at, "!GetAtt takes Resource.Attribute")),
                };
                self.get_att(&id, &attribute, at).map(Some)
            }
            "Sub" => {
                let (text, vars) = match arg {
                    Yaml::String(s) => (s.clone(), None),
                    Yaml::Sequence(s) if s.len() == 2 => (
                        s[0].as_str()
                            .ok_or_else(|| invalid(at, "!Sub's first element is not a string"))?
                            .to_owned(),
                        s[1].as_mapping(),
                    ),
                    _ => return Err(invalid(at, "!Sub takes a string or [string, variables]")),
                };
                self.sub(&text, vars, at).map(|s| Some(Json::String(s)))
            }
            "If" => {
                let a = self.args(name, arg, 3, at)?;
                let cond = a[0]
                    .as_str()
                    .ok_or_else(|| invalid(at, "!If's first element names a condition"))?;
                if self.condition(cond, at)? {
                    self.resolve(&a[1], at)
                } else {
                    self.resolve(&a[2], at)
                }
            }
            "Equals" => {
                let a = self.args(name, arg, 2, at)?;
                let l = self.resolve(&a[0], at)?;
                let r = self.resolve(&a[1], at)?;
                let same = match (
                    l.as_ref().and_then(json_text),
                    r.as_ref().and_then(json_text),
                ) {
                    (Some(l), Some(r)) => l == r,
                    _ => l == r,
                };
                Ok(Some(Json::Bool(same)))
            }
            "Not" => {
                let a = self.args(name, arg, 1, at)?;
                Ok(Some(Json::Bool(!self.boolean(&a[0], at)?)))
            }
            "And" | "Or" => {
                let items = arg
                    .as_sequence()
                    .ok_or_else(|| invalid(at, format!("!{name} takes a list")))?;
                let mut values = Vec::with_capacity(items.len());
                for i in items {
                    values.push(self.boolean(i, at)?);
                }
                Ok(Some(Json::Bool(if name == "And" {
                    values.iter().all(|b| *b)
                } else {
                    values.iter().any(|b| *b)
                })))
            }
            "Condition" => {
                let c = arg
                    .as_str()
                    .ok_or_else(|| invalid(at, "Condition takes a name"))?;
                Ok(Some(Json::Bool(self.condition(c, at)?)))
            }
            "Join" => {
                let a = self.args(name, arg, 2, at)?;
                let delimiter = self.string(&a[0], at)?;
                let parts = match self.resolve(&a[1], at)? {
                    Some(Json::Array(items)) => items
                        .iter()
                        .map(|i| json_text(i).ok_or_else(|| invalid(at, "!Join of a non-string")))
                        .collect::<Result<Vec<_>, _>>()?,
                    _ => return Err(invalid(at, "!Join takes a list to join")),
                };
                Ok(Some(Json::String(parts.join(&delimiter))))
            }
            "Select" => {
                let a = self.args(name, arg, 2, at)?;
                let index: usize = self
                    .string(&a[0], at)?
                    .parse()
                    .map_err(|_| invalid(at, "!Select's index is not a number"))?;
                match self.resolve(&a[1], at)? {
                    Some(Json::Array(items)) => {
                        items.get(index).cloned().map(Some).ok_or_else(|| {
                            invalid(at, format!("!Select index {index} is out of range"))
                        })
                    }
                    _ => Err(invalid(at, "!Select takes a list")),
                }
            }
            "Split" => {
                let a = self.args(name, arg, 2, at)?;
                let delimiter = self.string(&a[0], at)?;
                let text = self.string(&a[1], at)?;
                Ok(Some(Json::Array(
                    text.split(delimiter.as_str())
                        .map(|s| Json::String(s.to_owned()))
                        .collect(),
                )))
            }
            other => Err(TemplateError::Unsupported {
                at: at.to_owned(),
                function: other.to_owned(),
            }),
        }
    }

    fn sub(&self, text: &str, vars: Option<&Mapping>, at: &str) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| invalid(at, "!Sub has an unclosed ${"))?;
            let var = &after[..end];
            if let Some(literal) = var.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else {
                let value = match vars.and_then(|m| m.get(var)) {
                    Some(v) => self.string(v, at)?,
                    None => match var.split_once('.') {
                        Some((id, attribute)) if self.template.resource_type(id).is_some() => {
                            json_text(&self.get_att(id, attribute, at)?)
                                .ok_or_else(|| invalid(at, "not a string"))?
                        }
                        _ => match self.ref_value(var, at)? {
                            Some(j) => json_text(&j).ok_or_else(|| {
                                invalid(at, format!("${{{var}}} is not a string"))
                            })?,
                            None => String::new(),
                        },
                    },
                };
                out.push_str(&value);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// A YAML scalar as text.
fn scalar_text(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A JSON scalar as text (numbers and booleans as CloudFormation passes them: as strings).
pub fn json_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A number given as a number or a numeric string.
pub fn json_u64(v: &Json) -> Option<u64> {
    match v {
        Json::Number(n) => n.as_u64(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = r#"
Parameters:
  Size: {Type: Number, Default: 100}
  Names: {Type: CommaDelimitedList, Default: ""}
  Required: {Type: String}
Conditions:
  HasNames: !Not [!Equals [!Join ["", !Ref Names], ""]]
Resources:
  Q: {Type: AWS::SQS::Queue, Properties: {}}
  Bus:
    Type: AWS::Events::EventBus
    Properties: {Name: !Sub "bus-${AWS::StackName}"}
  Rule:
    Type: AWS::Events::Rule
    Properties: {EventBusName: !Ref Bus}
  Key: {Type: AWS::KMS::Key, Properties: {}}
"#;

    fn ctx() -> StackContext {
        StackContext {
            stack_name: "pg".into(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            partition: "aws".into(),
        }
    }

    fn eval(r: &Resolver<'_>, yaml: &str) -> Result<Resolved, TemplateError> {
        let v: Yaml = serde_yaml_ng::from_str(yaml).unwrap();
        r.resolve(&v, "test")
    }

    #[test]
    fn intrinsics_resolve() {
        let t = Template::parse("t", T).unwrap();
        let c = ctx();
        let mut r = Resolver::new(&t, &c, &BTreeMap::new());
        let s = |v: Resolved| v.and_then(|j| json_text(&j)).unwrap();
        assert_eq!(s(eval(&r, "!Ref Size").unwrap()), "100");
        assert_eq!(s(eval(&r, "!Ref Bus").unwrap()), "bus-pg");
        assert_eq!(
            s(eval(&r, "!GetAtt Q.Arn").unwrap()),
            "arn:aws:sqs:us-east-1:123456789012:pg-Q"
        );
        assert_eq!(
            s(eval(&r, "{\"Fn::GetAtt\": [Rule, Arn]}").unwrap()),
            "arn:aws:events:us-east-1:123456789012:rule/bus-pg/pg-Rule"
        );
        assert_eq!(
            s(eval(
                &r,
                "!Sub ['${Q.QueueName}/${AWS::Region}/${!Literal}/${x}', {x: !Ref Size}]"
            )
            .unwrap()),
            "pg-Q/us-east-1/${Literal}/100"
        );
        assert_eq!(s(eval(&r, "!If [HasNames, a, b]").unwrap()), "b");
        assert_eq!(
            eval(&r, "!If [HasNames, a, !Ref AWS::NoValue]").unwrap(),
            None
        );
        assert_eq!(
            eval(
                &r,
                "[a, !Ref AWS::NoValue, !Select [1, !Split [',', 'x,y']]]"
            )
            .unwrap(),
            Some(serde_json::json!(["a", "y"]))
        );
        // Queue URLs are known once the queue exists.
        assert!(eval(&r, "!Ref Q").is_err());
        r.set_queue_url("Q", "http://localhost/123456789012/pg-Q");
        assert_eq!(
            s(eval(&r, "!Ref Q").unwrap()),
            "http://localhost/123456789012/pg-Q"
        );
        // Overrides beat defaults.
        let over = BTreeMap::from([("Names".to_owned(), "a,b".to_owned())]);
        let r2 = Resolver::new(&t, &c, &over);
        assert_eq!(s(eval(&r2, "!If [HasNames, a, b]").unwrap()), "a");
    }

    #[test]
    fn unsupported_and_unknown_references_are_clear_errors() {
        let t = Template::parse("t", T).unwrap();
        let c = ctx();
        let r = Resolver::new(&t, &c, &BTreeMap::new());
        let err = eval(&r, "{x: [1, !FindInMap [M, a, b]]}").unwrap_err();
        assert!(
            matches!(&err, TemplateError::Unsupported { function, at } if function == "FindInMap" && at.contains("test.x[1]")),
            "{err}"
        );
        let err = eval(&r, "!ImportValue shared").unwrap_err();
        assert!(err.to_string().contains("ImportValue"), "{err}");
        let err = eval(&r, "!Ref Nope").unwrap_err();
        assert!(matches!(err, TemplateError::UnknownRef { .. }), "{err}");
        let err = eval(&r, "!GetAtt Key.Arn").unwrap_err();
        assert!(
            matches!(&err, TemplateError::NotLocal { kind, .. } if kind == "AWS::KMS::Key"),
            "{err}"
        );
        let err = eval(&r, "!Ref Required").unwrap_err();
        assert!(
            matches!(err, TemplateError::NoParameterValue { .. }),
            "{err}"
        );
        let err = eval(&r, "!If [Missing, a, b]").unwrap_err();
        assert!(err.to_string().contains("Missing"), "{err}");
        let err = eval(&r, "!Sub '${Unclosed'").unwrap_err();
        assert!(err.to_string().contains("unclosed"), "{err}");
        assert!(Template::parse("bad", "a: [").is_err());
    }
}
