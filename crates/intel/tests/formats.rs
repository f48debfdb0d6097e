//! One test per GuardDuty list format, with samples written for these tests (documentation
//! addresses 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32 and `.example`
//! names).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use peregrine_intel::{Format, Location, ParseError, Reason, parse};

const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn show(format: Format, text: &str) -> (Vec<String>, Vec<String>) {
    let list = parse(format, text.as_bytes()).expect("parses");
    let entries = list
        .entries
        .iter()
        .map(|e| match &e.threat_name {
            Some(n) => format!("{} [{n}]", e.indicator),
            None => e.indicator.to_string(),
        })
        .collect();
    let rejected = list.rejected.iter().map(|r| r.to_string()).collect();
    assert_eq!(list.rejected_total, list.rejected.len());
    (entries, rejected)
}

#[test]
fn plaintext() {
    let text = format!(
        "# Threat list, 2026-12-03\n\
         192.0.2.10\n\
         \n\
         198.51.100.0/24\r\n\
         2001:db8:bad::/48\n\
         C2.Evil.example.\n\
         *.pool.example\n\
         {sha}\n\
         http://evil.example/payload\n\
         10.0.0.0/40\n\
         # a comment\n\
         {long}\n",
        sha = SHA.to_uppercase(),
        long = "a".repeat(5000),
    );
    let (entries, rejected) = show(Format::Txt, &text);
    assert_eq!(
        entries,
        [
            "192.0.2.10",
            "198.51.100.0/24",
            "2001:db8:bad::/48",
            "c2.evil.example",
            "*.pool.example",
            SHA
        ]
    );
    assert_eq!(
        rejected,
        [
            r#"line 12: longer than 4096 bytes ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")"#,
            r#"line 9: a URL (give the domain or the address) ("http://evil.example/payload")"#,
            r#"line 10: not an address or CIDR network ("10.0.0.0/40")"#,
        ]
    );
}

#[test]
fn nothing_parsed_is_an_error_and_empty_is_not() {
    let err = parse(Format::Txt, b"junk value\nmore junk\n").unwrap_err();
    let ParseError::NothingParsed {
        rejected_total,
        first,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(rejected_total, 2);
    assert_eq!(first.map(|r| r.at), Some(Location::Line(1)));
    assert!(
        parse(Format::Txt, b"# only comments\n")
            .unwrap()
            .entries
            .is_empty()
    );
    let big = vec![b'#'; peregrine_intel::MAX_FILE_BYTES + 1];
    assert!(matches!(
        parse(Format::Txt, &big),
        Err(ParseError::TooLarge { .. })
    ));
}

#[test]
fn invalid_utf8_rejects_the_value_not_the_list() {
    let (entries, rejected) = show(
        Format::Txt,
        &String::from_utf8_lossy(b"192.0.2.1\nev\xffil.example\n"),
    );
    assert_eq!(entries, ["192.0.2.1"]);
    assert_eq!(rejected.len(), 1);
}

#[test]
fn rejected_lines_are_counted_beyond_those_kept() {
    let mut text = String::from("192.0.2.1\n");
    for _ in 0..250 {
        text.push_str("bad value\n");
    }
    let list = parse(Format::Txt, text.as_bytes()).unwrap();
    assert_eq!((list.rejected.len(), list.rejected_total), (100, 250));
}

#[test]
fn stix1_xml() {
    let xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<stix:STIX_Package xmlns:stix="http://stix.mitre.org/stix-1" xmlns:indicator="http://stix.mitre.org/Indicator-2"
    xmlns:cybox="http://cybox.mitre.org/cybox-2" xmlns:cyboxCommon="http://cybox.mitre.org/common-2"
    xmlns:AddressObj="http://cybox.mitre.org/objects#AddressObject-2"
    xmlns:DomainNameObj="http://cybox.mitre.org/objects#DomainNameObject-1"
    xmlns:FileObj="http://cybox.mitre.org/objects#FileObject-2"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="example:Package-1" version="1.2">
  <stix:STIX_Header><stix:Title>Example feed</stix:Title></stix:STIX_Header>
  <stix:Indicators>
    <stix:Indicator xsi:type="indicator:IndicatorType" id="example:indicator-1">
      <indicator:Title>Example C2 servers</indicator:Title>
      <indicator:Type>IP Watchlist</indicator:Type>
      <indicator:Observable id="example:Observable-1">
        <cybox:Object id="example:Address-1">
          <cybox:Properties xsi:type="AddressObj:AddressObjectType" category="ipv4-addr">
            <AddressObj:Address_Value condition="Equals" apply_condition="ANY">192.0.2.44##comma##198.51.100.0/25##comma##300.1.1.1</AddressObj:Address_Value>
          </cybox:Properties>
        </cybox:Object>
      </indicator:Observable>
    </stix:Indicator>
    <stix:Indicator xsi:type="indicator:IndicatorType" id="example:indicator-2">
      <indicator:Title>Example phishing &amp; malware domain</indicator:Title>
      <indicator:Observable>
        <cybox:Object>
          <cybox:Properties xsi:type="DomainNameObj:DomainNameObjectType" type="FQDN">
            <DomainNameObj:Value condition="Equals">Login-Update.Example</DomainNameObj:Value>
          </cybox:Properties>
        </cybox:Object>
      </indicator:Observable>
    </stix:Indicator>
    <stix:Indicator xsi:type="indicator:IndicatorType" id="example:indicator-3">
      <indicator:Title>Example miner</indicator:Title>
      <indicator:Observable>
        <cybox:Object>
          <cybox:Properties xsi:type="FileObj:FileObjectType">
            <FileObj:Hashes>
              <cyboxCommon:Hash>
                <cyboxCommon:Type xsi:type="cyboxVocabs:HashNameVocab-1.0">MD5</cyboxCommon:Type>
                <cyboxCommon:Simple_Hash_Value>d41d8cd98f00b204e9800998ecf8427e</cyboxCommon:Simple_Hash_Value>
              </cyboxCommon:Hash>
              <cyboxCommon:Hash>
                <cyboxCommon:Type xsi:type="cyboxVocabs:HashNameVocab-1.0">SHA256</cyboxCommon:Type>
                <cyboxCommon:Simple_Hash_Value>{SHA}</cyboxCommon:Simple_Hash_Value>
              </cyboxCommon:Hash>
            </FileObj:Hashes>
          </cybox:Properties>
        </cybox:Object>
      </indicator:Observable>
    </stix:Indicator>
  </stix:Indicators>
</stix:STIX_Package>
"#
    );
    let (entries, rejected) = show(Format::Stix, &xml);
    assert_eq!(
        entries,
        [
            "192.0.2.44 [Example C2 servers]",
            "198.51.100.0/25 [Example C2 servers]",
            "login-update.example [Example phishing & malware domain]",
            &format!("{SHA} [Example miner]"),
        ]
    );
    assert_eq!(
        rejected,
        [
            r#"line 16: not an address or CIDR network ("300.1.1.1")"#,
            r#"line 39: a hash other than SHA-256 (MD5 and SHA-1 are not matched) ("d41d8cd98f00b204e9800998ecf8427e")"#,
        ]
    );
}

#[test]
fn stix1_broken_xml_keeps_what_came_before() {
    let xml = "<stix:STIX_Package xmlns:stix=\"s\" xmlns:AddressObj=\"a\">\n<AddressObj:Address_Value>192.0.2.1</AddressObj:Address_Value>\n<a></b>\n";
    let list = parse(Format::Stix, xml.as_bytes()).unwrap();
    assert_eq!(list.entries.len(), 1);
    assert!(
        matches!(list.rejected[0].reason, Reason::Syntax(_)),
        "{:?}",
        list.rejected
    );
}

#[test]
fn stix2_json() {
    let json = format!(
        r#"{{
  "type": "bundle",
  "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
  "objects": [
    {{"type": "identity", "spec_version": "2.1", "id": "identity--1", "name": "Example CERT"}},
    {{"type": "indicator", "spec_version": "2.1", "id": "indicator--1", "name": "Example C2",
      "pattern": "[ipv4-addr:value = '192.0.2.77'] OR [ipv4-addr:value = '203.0.113.0/24']",
      "pattern_type": "stix", "valid_from": "2026-11-01T00:00:00Z"}},
    {{"type": "indicator", "spec_version": "2.1", "id": "indicator--2", "name": "Example mining pool",
      "pattern": "[domain-name:value = 'XMR.Pool.example']", "pattern_type": "stix", "valid_from": "2026-11-01T00:00:00Z"}},
    {{"type": "indicator", "spec_version": "2.1", "id": "indicator--3",
      "pattern": "[file:hashes.'SHA-256' = '{SHA}']", "pattern_type": "stix", "valid_from": "2026-11-01T00:00:00Z"}},
    {{"type": "indicator", "spec_version": "2.1", "id": "indicator--4", "name": "v6",
      "pattern": "[ipv6-addr:value = '2001:db8::dead']", "valid_from": "2026-11-01T00:00:00Z"}},
    {{"type": "indicator", "spec_version": "2.1", "id": "indicator--5", "name": "url",
      "pattern": "[url:value = 'http://evil.example/']", "pattern_type": "stix", "valid_from": "2026-11-01T00:00:00Z"}},
    {{"type": "indicator", "spec_version": "2.1", "id": "indicator--6",
      "pattern": "alert tcp any any -> any any", "pattern_type": "snort", "valid_from": "2026-11-01T00:00:00Z"}}
  ]
}}"#
    );
    let (entries, rejected) = show(Format::Stix, &json);
    assert_eq!(
        entries,
        [
            "192.0.2.77 [Example C2]",
            "203.0.113.0/24 [Example C2]",
            "xmr.pool.example [Example mining pool]",
            SHA,
            "2001:db8::dead [v6]",
        ]
    );
    assert_eq!(
        rejected,
        [
            r#"object 6: pattern compares no IP address, network, domain or SHA-256 ("[url:value = 'http://evil.example/']")"#,
            r#"object 7: indicator type "snort" is not matched ("")"#,
        ]
    );
}

#[test]
fn otx_csv() {
    let csv = format!(
        "Indicator type,Indicator,Description\n\
         IPv4,192.0.2.5,Example scanner\n\
         domain,bad.example,\n\
         hostname,\"c2.bad.example\",\"Example C2, stage 2\"\n\
         FileHash-SHA256,{SHA},Example dropper\n\
         URL,http://bad.example/x,\n\
         CIDR,198.51.100.128/25,Example range\n\
         IPv6,2001:db8::5,\n\
         IPv4,192.0.2.500,typo\n"
    );
    let (entries, rejected) = show(Format::OtxCsv, &csv);
    assert_eq!(
        entries,
        [
            "192.0.2.5 [Example scanner]",
            "bad.example",
            "c2.bad.example [Example C2, stage 2]",
            &format!("{SHA} [Example dropper]"),
            "198.51.100.128/25 [Example range]",
            "2001:db8::5",
        ]
    );
    assert_eq!(
        rejected,
        [
            r#"line 6: indicator type "URL" is not matched ("http://bad.example/x")"#,
            r#"line 9: not an address or CIDR network ("192.0.2.500")"#,
        ]
    );
}

#[test]
fn alienvault_reputation() {
    let text = "192.0.2.20#4#2#Malicious Host#US#Seattle#47.6,-122.3#11\n\
                198.51.100.21#3#3#Scanning Host;Spamming#GB##51.5,-0.1#12\n\
                not-an-ip#1#1#Scanning Host#US###1\n\
                203.0.113.22\n";
    let (entries, rejected) = show(Format::AlienVault, text);
    assert_eq!(
        entries,
        [
            "192.0.2.20 [Malicious Host]",
            "198.51.100.21 [Scanning Host;Spamming]",
            "203.0.113.22",
        ]
    );
    assert_eq!(
        rejected,
        [r#"line 3: not an address or CIDR network ("not-an-ip#1#1#Scanning Host#US###1")"#]
    );
}

#[test]
fn proofpoint_et() {
    let ips = "ip, category, score, first_seen, last_seen, ports (|)\n\
               192.0.2.30,1,127,2026-10-01,2026-12-01,443|8443\n\
               198.51.100.31,40,80,2026-11-01,2026-12-01,3333\n\
               192.0.2.300,1,100,2026-11-01,2026-12-01,\n";
    let (entries, rejected) = show(Format::ProofPoint, ips);
    assert_eq!(
        entries,
        [
            "192.0.2.30 [ET category 1 (CnC)]",
            "198.51.100.31 [ET category 40 (Bitcoin_Related)]",
        ]
    );
    assert_eq!(
        rejected,
        [r#"line 4: not an address or CIDR network ("192.0.2.300")"#]
    );
    let domains = "domain, category, score, first_seen, last_seen\n\
                   evil-cdn.example,7,90,2026-10-01,2026-12-01\n\
                   odd.example,99,10,2026-10-01,2026-12-01\n";
    let (entries, _) = show(Format::ProofPoint, domains);
    assert_eq!(
        entries,
        [
            "evil-cdn.example [ET category 7 (DriveBySrc)]",
            "odd.example [ET category 99]"
        ]
    );
}

#[test]
fn fireeye_isight() {
    let csv = format!(
        "reportId,title,ThreatScape,audience,intelligenceType,publishDate,reportLink,webLink,md5,sha1,sha256,fileName,domain,ip,cidr,port,protocol,url,malwareFamily,actor,observationTime\n\
         26-00001,Example backdoor report,Cyber Crime,Operational,threat,1764547200,https://intel.example/r/1,,,,,,backdoor.example,192.0.2.40,,443,tcp,,EXAMPLEBACKDOOR,,1764547200\n\
         26-00002,Example miner report,Cyber Crime,Operational,malware,1764547200,,,d41d8cd98f00b204e9800998ecf8427e,,{SHA},xmr,,,198.51.100.0/26,,,,,Example Actor,1764547200\n\
         26-00003,URL only,Cyber Crime,Operational,threat,1764547200,,,,,,,,,,,,http://x.example/a,,,1764547200\n\
         26-00004,Bad ip,Cyber Crime,Operational,threat,1764547200,,,,,,,,192.0.2.999,,,,,,,1764547200\n"
    );
    let (entries, rejected) = show(Format::FireEye, &csv);
    assert_eq!(
        entries,
        [
            "192.0.2.40 [EXAMPLEBACKDOOR]",
            "backdoor.example [EXAMPLEBACKDOOR]",
            "198.51.100.0/26 [Example Actor]",
            &format!("{SHA} [Example Actor]"),
        ]
    );
    assert_eq!(
        rejected,
        [r#"line 5: not an address or CIDR network ("192.0.2.999")"#]
    );
    let err = parse(Format::FireEye, b"reportId,title\n1,x\n");
    assert!(
        matches!(err, Err(ParseError::NothingParsed { .. })),
        "{err:?}"
    );
}

#[test]
fn format_names() {
    for f in Format::ALL {
        assert_eq!(f.as_str().parse::<Format>(), Ok(f));
    }
    assert_eq!("otx-csv".parse::<Format>(), Ok(Format::OtxCsv));
    assert!("XML".parse::<Format>().is_err());
}
