//! Tests of the generated typed models against the shipped schemas.

use std::collections::{BTreeMap, BTreeSet};

use ovsdb::model::{self, Model, ModelVisitor};
use ovsdb::models::{ic_nb, ic_sb, nb, sb, vswitch};
use ovsdb::schema::{AtomicType, BaseType, ColumnType, DatabaseSchema};
use ovsdb::{Atom, Datum, Row, Uuid};

/// Every generated module with its database name, schema and table list.
fn databases() -> Vec<(
    &'static str,
    &'static DatabaseSchema,
    &'static [&'static str],
)> {
    vec![
        (nb::DATABASE, nb::schema(), nb::TABLES),
        (sb::DATABASE, sb::schema(), sb::TABLES),
        (ic_nb::DATABASE, ic_nb::schema(), ic_nb::TABLES),
        (ic_sb::DATABASE, ic_sb::schema(), ic_sb::TABLES),
        (vswitch::DATABASE, vswitch::schema(), vswitch::TABLES),
    ]
}

#[test]
fn every_shipped_schema_parses_and_matches_its_module() {
    let names: Vec<&str> = databases().iter().map(|(db, _, _)| *db).collect();
    assert_eq!(
        names,
        [
            "OVN_Northbound",
            "OVN_Southbound",
            "OVN_IC_Northbound",
            "OVN_IC_Southbound",
            "Open_vSwitch"
        ]
    );
    for (db, schema, tables) in databases() {
        assert_eq!(schema.name, db);
        let schema_tables: Vec<&str> = schema.tables.keys().map(String::as_str).collect();
        assert_eq!(schema_tables, tables, "{db}: tables with a model");
    }
}

/// A value of a base type that satisfies its constraints; `second` picks a different one.
fn sample_atom(base: &BaseType, second: bool) -> Atom {
    if let Some(e) = &base.enumeration {
        return if second {
            e.iter().next_back().unwrap().clone()
        } else {
            e.iter().next().unwrap().clone()
        };
    }
    match base.atomic {
        AtomicType::Integer => {
            let lo = base.min_integer.unwrap_or(1);
            Atom::Integer(if second { lo + 1 } else { lo })
        }
        AtomicType::Real => {
            let lo = base.min_real.unwrap_or(0.0);
            Atom::Real(if second { lo + 1.0 } else { lo + 0.5 })
        }
        AtomicType::Boolean => Atom::Boolean(second),
        AtomicType::String => {
            let n = base.min_length.unwrap_or(1).max(1) as usize;
            Atom::from(if second { "b" } else { "a" }.repeat(n))
        }
        AtomicType::Uuid => Atom::Uuid(if second {
            Uuid::from_u128(2)
        } else {
            Uuid::from_u128(1)
        }),
    }
}

/// A non-default datum of a column type: two elements where the type allows more than one.
fn sample_datum(ty: &ColumnType) -> Datum {
    let many = !matches!(ty.max, Some(m) if m <= 1);
    let d = match &ty.value {
        Some(v) => {
            let mut m =
                ovsdb::AtomMap::from([(sample_atom(&ty.key, false), sample_atom(v, false))]);
            if many {
                m.insert(sample_atom(&ty.key, true), sample_atom(v, true));
            }
            Datum::Map(m)
        }
        None => {
            let mut s = ovsdb::AtomSet::from([sample_atom(&ty.key, false)]);
            if many {
                s.insert(sample_atom(&ty.key, true));
            }
            Datum::Set(s)
        }
    };
    d.check(ty).expect("sample datum fits its column");
    d
}

/// Runs the per-table checks for every model of one database.
struct CheckTables {
    schema: &'static DatabaseSchema,
    visited: Vec<&'static str>,
}

impl ModelVisitor for CheckTables {
    fn visit<M: Model>(&mut self) {
        let table = self
            .schema
            .tables
            .get(M::TABLE)
            .unwrap_or_else(|| panic!("{} is not in {}", M::TABLE, self.schema.name));
        assert_eq!(M::DATABASE, self.schema.name);
        self.visited.push(M::TABLE);
        let columns: Vec<&str> = table.columns.keys().map(String::as_str).collect();
        assert_eq!(M::COLUMNS, columns, "{}: COLUMNS", M::TABLE);

        // An empty row decodes to the defaults, which are the schema's defaults for a new row.
        let empty = M::from_row(Uuid::from_u128(7), &Row::new()).unwrap();
        assert_eq!(empty.uuid(), Uuid::from_u128(7));
        let row = empty.to_row();
        let keys: Vec<&str> = row.keys().copied().collect();
        assert_eq!(
            keys,
            columns,
            "{}: to_row covers exactly the columns",
            M::TABLE
        );
        for (name, col) in &table.columns {
            // Sets that must be non-empty (min 1, max > 1) have no valid default; the model
            // leaves them empty for the caller to fill.
            let non_empty_set = col.ty.value.is_none() && col.ty.min == 1 && col.ty.max != Some(1);
            let expected = if non_empty_set {
                Datum::empty_set()
            } else {
                col.ty.default_datum()
            };
            assert_eq!(row[name.as_str()], expected, "{}.{name}: default", M::TABLE);
        }

        // A row with a non-default value in every column survives the round trip unchanged.
        let sample: Row = table
            .columns
            .values()
            .map(|col| (col.name, sample_datum(&col.ty)))
            .collect();
        let typed = M::from_row(Uuid::from_u128(9), &sample)
            .unwrap_or_else(|e| panic!("{}: sample row: {e}", M::TABLE));
        assert_ne!(typed, empty, "{}: sample differs from default", M::TABLE);
        assert_eq!(
            typed.to_row(),
            sample,
            "{}: to_row(from_row(sample))",
            M::TABLE
        );
        assert_eq!(
            M::from_row(typed.uuid(), &typed.to_row()).unwrap(),
            typed,
            "{}: from_row(to_row(x))",
            M::TABLE
        );
    }
}

#[test]
fn every_table_of_every_schema_has_a_model_covering_exactly_its_columns() {
    let mut total = 0;
    for (db, schema, _) in databases() {
        let mut check = CheckTables {
            schema,
            visited: Vec::new(),
        };
        match db {
            "OVN_Northbound" => nb::visit_models(&mut check),
            "OVN_Southbound" => sb::visit_models(&mut check),
            "OVN_IC_Northbound" => ic_nb::visit_models(&mut check),
            "OVN_IC_Southbound" => ic_sb::visit_models(&mut check),
            "Open_vSwitch" => vswitch::visit_models(&mut check),
            _ => unreachable!(),
        }
        let mut visited = check.visited.clone();
        visited.sort_unstable();
        let expected: Vec<&str> = schema.tables.keys().map(String::as_str).collect();
        assert_eq!(visited, expected, "{db}: every table visited once");
        total += visited.len();
    }
    assert!(total > 90, "only {total} tables checked");
}

#[test]
fn struct_names_follow_the_camel_case_rule() {
    assert_eq!(nb::LogicalSwitchPort::TABLE, "Logical_Switch_Port");
    assert_eq!(nb::Acl::TABLE, "ACL");
    assert_eq!(nb::NbGlobal::TABLE, "NB_Global");
    assert_eq!(nb::DhcpOptions::TABLE, "DHCP_Options");
    assert_eq!(nb::Qos::TABLE, "QoS");
    assert_eq!(sb::Dhcpv6Options::TABLE, "DHCPv6_Options");
    assert_eq!(vswitch::OpenVSwitch::TABLE, "Open_vSwitch");
    assert_eq!(vswitch::SFlow::TABLE, "sFlow");
    assert_eq!(vswitch::Ipfix::TABLE, "IPFIX");
    assert_eq!(ic_nb::IcNbGlobal::DATABASE, "OVN_IC_Northbound");
    assert_eq!(nb::LogicalSwitch::NAME, "name");
    assert_eq!(nb::LogicalSwitchPort::TYPE, "type");
}

fn populated_lsp() -> nb::LogicalSwitchPort {
    nb::LogicalSwitchPort {
        uuid: Uuid::from_u128(0x1234),
        name: "pod1.default".into(),
        addresses: BTreeSet::from(["00:00:00:00:00:01 10.0.0.2".to_string(), "router".into()]),
        options: BTreeMap::from([("requested-chassis".to_string(), "node1".to_string())]),
        external_ids: BTreeMap::from([
            ("pod".to_string(), "default/pod1".to_string()),
            ("vendor".to_string(), "kube-ovn".to_string()),
        ]),
        tag: Some(42),
        tag_request: None,
        enabled: Some(true),
        up: Some(false),
        r#type: "localnet".into(),
        dhcpv4_options: Some(Uuid::from_u128(0x77)),
        ..Default::default()
    }
}

#[test]
fn populated_logical_switch_port_round_trips() {
    let lsp = populated_lsp();
    let row = lsp.to_row();
    assert_eq!(row["tag"], Datum::scalar(42i64));
    assert_eq!(row["tag_request"], Datum::empty_set());
    assert_eq!(row["type"], Datum::scalar("localnet"));
    assert_eq!(
        row["external_ids"],
        Datum::map([("pod", "default/pod1"), ("vendor", "kube-ovn")])
    );
    assert_eq!(row["addresses"].len(), 2);
    assert!(!row.contains_key("_uuid"));
    let back = nb::LogicalSwitchPort::from_row(lsp.uuid, &row).unwrap();
    assert_eq!(back, lsp);

    // The row also survives the wire: encode each datum, decode it against the schema.
    let table = &nb::schema().tables["Logical_Switch_Port"];
    let wire: Row = row
        .iter()
        .map(|(k, d)| {
            let ty = &table.columns[*k].ty;
            (*k, Datum::from_json_typed(&d.to_json(), ty).unwrap())
        })
        .collect();
    assert_eq!(
        nb::LogicalSwitchPort::from_row(lsp.uuid, &wire).unwrap(),
        lsp
    );
}

#[test]
fn unknown_columns_are_ignored_and_missing_columns_take_defaults() {
    let row = Row::from([
        ("name", Datum::scalar("ls1")),
        ("_uuid", Datum::scalar(Uuid::from_u128(5))),
        ("column_from_a_newer_schema", Datum::scalar(3i64)),
        ("other_config", Datum::map([("subnet", "10.0.0.0/24")])),
    ]);
    let ls = nb::LogicalSwitch::from_row(Uuid::from_u128(5), &row).unwrap();
    assert_eq!(ls.name, "ls1");
    assert_eq!(ls.other_config["subnet"], "10.0.0.0/24");
    assert!(ls.ports.is_empty());
    assert!(ls.external_ids.is_empty());
    assert_eq!(ls.uuid, Uuid::from_u128(5));
    let out = ls.to_row();
    assert!(!out.contains_key("column_from_a_newer_schema"));
    assert!(!out.contains_key("_uuid"));

    // A scalar enum column that is missing takes the first allowed value.
    let acl = nb::Acl::from_row(Uuid::nil(), &Row::new()).unwrap();
    assert_eq!(acl.action, nb::AclAction::default());
    assert_eq!(acl.action.as_str(), "allow");
    assert_eq!(acl.priority, 0);
    assert_eq!(acl.r#match, "");
}

fn err_of<M: Model>(row: Row) -> String {
    match M::from_row(Uuid::nil(), &row) {
        Ok(m) => panic!("{} decoded a bad row into {m:?}", M::TABLE),
        Err(e) => e.to_string(),
    }
}

#[test]
fn wrong_typed_columns_are_errors_naming_the_column() {
    let e = err_of::<nb::LogicalSwitchPort>(Row::from([("tag", Datum::scalar("forty-two"))]));
    assert!(e.contains("Logical_Switch_Port.tag"), "{e}");
    assert!(e.contains("integer"), "{e}");

    let e = err_of::<nb::LogicalSwitchPort>(Row::from([("external_ids", Datum::set(["a", "b"]))]));
    assert!(e.contains("Logical_Switch_Port.external_ids"), "{e}");
    assert!(e.contains("map"), "{e}");

    let e = err_of::<nb::LogicalSwitchPort>(Row::from([("options", Datum::map([("k", 1i64)]))]));
    assert!(e.contains("Logical_Switch_Port.options"), "{e}");

    let e = err_of::<nb::LogicalSwitchPort>(Row::from([("tag", Datum::set([1i64, 2]))]));
    assert!(
        e.contains("Logical_Switch_Port.tag") && e.contains("at most one"),
        "{e}"
    );

    let e = err_of::<nb::LogicalSwitch>(Row::from([("name", Datum::empty_set())]));
    assert!(
        e.contains("Logical_Switch.name") && e.contains("exactly one"),
        "{e}"
    );

    let e = err_of::<nb::LogicalSwitch>(Row::from([("ports", Datum::set(["not-a-uuid"]))]));
    assert!(
        e.contains("Logical_Switch.ports") && e.contains("uuid"),
        "{e}"
    );

    let e = err_of::<vswitch::Bridge>(Row::from([("stp_enable", Datum::map([("a", "b")]))]));
    assert!(e.contains("Bridge.stp_enable"), "{e}");
}

#[test]
fn unknown_enum_values_are_clear_errors() {
    let e = err_of::<nb::Acl>(Row::from([("action", Datum::scalar("frobnicate"))]));
    assert!(e.contains("ACL.action"), "{e}");
    assert!(e.contains("\"frobnicate\""), "{e}");
    assert!(e.contains("allow-related"), "{e}");

    let e = err_of::<nb::Acl>(Row::from([("action", Datum::scalar(1i64))]));
    assert!(e.contains("ACL.action") && e.contains("string"), "{e}");

    let parsed: Result<nb::AclAction, _> = "frobnicate".parse();
    assert!(parsed.unwrap_err().to_string().contains("frobnicate"));

    // Optional enum columns decode too.
    let bridge = vswitch::Bridge::from_row(
        Uuid::nil(),
        &Row::from([("fail_mode", Datum::scalar("secure"))]),
    )
    .unwrap();
    assert_eq!(bridge.fail_mode, Some(vswitch::BridgeFailMode::Secure));
    let e = err_of::<vswitch::Bridge>(Row::from([("fail_mode", Datum::scalar("insecure"))]));
    assert!(
        e.contains("Bridge.fail_mode") && e.contains("standalone"),
        "{e}"
    );
}

#[test]
fn enums_round_trip_through_their_strings() {
    assert_eq!(nb::AclAction::AllowRelated.as_str(), "allow-related");
    assert_eq!(nb::AclAction::AllowRelated.to_string(), "allow-related");
    let schema_values: Vec<String> = nb::schema().tables["ACL"].columns["action"]
        .ty
        .key
        .enumeration
        .as_ref()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let ours: Vec<&str> = nb::AclAction::ALL.iter().map(|a| a.as_str()).collect();
    assert_eq!(ours, schema_values);
    for a in nb::AclAction::ALL {
        assert_eq!(a.as_str().parse::<nb::AclAction>().unwrap(), *a);
    }
    assert_eq!(nb::AclAction::default(), nb::AclAction::ALL[0]);
}

#[test]
fn real_sets_are_sorted_and_deduplicated() {
    let row = Row::from([(
        "x",
        Datum::set([Atom::Real(2.5), Atom::Real(-1.0), Atom::Integer(3)]),
    )]);
    assert_eq!(
        model::get_real_set(&row, "T", "x").unwrap(),
        vec![-1.0, 2.5, 3.0]
    );
    assert_eq!(
        model::real_set_datum(&[2.5, 2.5, 1.0]),
        Datum::set([1.0, 2.5])
    );
    assert!(
        model::get_real_set(&Row::from([("x", Datum::scalar("a"))]), "T", "x")
            .unwrap_err()
            .to_string()
            .contains("T.x")
    );
}
