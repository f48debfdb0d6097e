//! GuardDuty's Runtime Monitoring finding types (reference §1, 46 types): each with its default
//! severity and the `service.runtimeDetails.context` members GuardDuty fills for it. Sample
//! findings (`CreateSampleFindings`) are made from this table; a type not in it is refused.

/// Default severities of the bands (reference §1: samples use 2, 5 and 8).
pub const LOW: f64 = 2.0;
pub const MEDIUM: f64 = 5.0;
pub const HIGH: f64 = 8.0;

/// One runtime finding type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RuntimeType {
    pub name: &'static str,
    /// The default severity; for GuardDuty's "variable" types, the band its samples use.
    pub severity: f64,
    /// The context members (camelCase, as on the wire) a finding of this type carries.
    pub context: &'static [&'static str],
}

const fn t(name: &'static str, severity: f64, context: &'static [&'static str]) -> RuntimeType {
    RuntimeType {
        name,
        severity,
        context,
    }
}

const FILE_MODIFIED: &[&str] = &["fileOperation", "filePath", "relatedFilePaths"];

/// Every runtime type, in the reference's order.
pub const RUNTIME_TYPES: &[RuntimeType] = &[
    // §1.1: network and DNS threat intelligence.
    t("CryptoCurrency:Runtime/BitcoinTool.B", HIGH, &[]),
    t("CryptoCurrency:Runtime/BitcoinTool.B!DNS", HIGH, &[]),
    t("Backdoor:Runtime/C&CActivity.B", HIGH, &[]),
    t("Backdoor:Runtime/C&CActivity.B!DNS", HIGH, &[]),
    t("UnauthorizedAccess:Runtime/TorRelay", HIGH, &[]),
    t("UnauthorizedAccess:Runtime/TorClient", HIGH, &[]),
    t("Trojan:Runtime/BlackholeTraffic", MEDIUM, &[]),
    t("Trojan:Runtime/BlackholeTraffic!DNS", MEDIUM, &[]),
    t("Trojan:Runtime/DropPoint", MEDIUM, &[]),
    t("Trojan:Runtime/DropPoint!DNS", MEDIUM, &[]),
    t("Trojan:Runtime/DGADomainRequest.C!DNS", HIGH, &[]),
    t("Trojan:Runtime/DriveBySourceTraffic!DNS", HIGH, &[]),
    t("Trojan:Runtime/PhishingDomainRequest!DNS", HIGH, &[]),
    t("Impact:Runtime/AbusedDomainRequest.Reputation", MEDIUM, &[]),
    t("Impact:Runtime/BitcoinDomainRequest.Reputation", HIGH, &[]),
    t(
        "Impact:Runtime/MaliciousDomainRequest.Reputation",
        HIGH,
        &[],
    ),
    t(
        "Impact:Runtime/SuspiciousDomainRequest.Reputation",
        LOW,
        &[],
    ),
    t("UnauthorizedAccess:Runtime/MetadataDNSRebind", HIGH, &[]),
    // §1.2: process, file and kernel behaviour.
    t(
        "Execution:Runtime/NewBinaryExecuted",
        MEDIUM,
        &["modifyingProcess", "modifiedAt"],
    ),
    t(
        "Execution:Runtime/NewLibraryLoaded",
        MEDIUM,
        &[
            "libraryPath",
            "ldPreloadValue",
            "modifyingProcess",
            "modifiedAt",
        ],
    ),
    t(
        "PrivilegeEscalation:Runtime/DockerSocketAccessed",
        MEDIUM,
        &["socketPath"],
    ),
    t(
        "PrivilegeEscalation:Runtime/RuncContainerEscape",
        HIGH,
        &["runcBinaryPath"],
    ),
    t(
        "PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified",
        HIGH,
        &["releaseAgentPath"],
    ),
    t(
        "DefenseEvasion:Runtime/ProcessInjection.Proc",
        HIGH,
        &["targetProcess"],
    ),
    t(
        "DefenseEvasion:Runtime/ProcessInjection.Ptrace",
        MEDIUM,
        &["targetProcess"],
    ),
    t(
        "DefenseEvasion:Runtime/ProcessInjection.VirtualMemoryWrite",
        HIGH,
        &["targetProcess", "memoryRegions"],
    ),
    t(
        "Execution:Runtime/ReverseShell",
        HIGH,
        &["addressFamily", "ianaProtocolNumber"],
    ),
    t(
        "DefenseEvasion:Runtime/FilelessExecution",
        MEDIUM,
        &["memoryRegions"],
    ),
    t("Impact:Runtime/CryptoMinerExecuted", HIGH, &[]),
    t(
        "PrivilegeEscalation:Runtime/ContainerMountsHostDirectory",
        MEDIUM,
        &["mountSource", "mountTarget", "fileSystemType", "flags"],
    ),
    t("PrivilegeEscalation:Runtime/UserfaultfdUsage", MEDIUM, &[]),
    t(
        "Execution:Runtime/SuspiciousTool",
        HIGH,
        &["toolName", "toolCategory"],
    ),
    t(
        "Execution:Runtime/SuspiciousCommand",
        MEDIUM,
        &["commandLineExample"],
    ),
    t(
        "DefenseEvasion:Runtime/SuspiciousCommand",
        MEDIUM,
        &["commandLineExample", "serviceName"],
    ),
    t("DefenseEvasion:Runtime/PtraceAntiDebugging", LOW, &[]),
    t(
        "Execution:Runtime/MaliciousFileExecuted",
        HIGH,
        &["threatFilePath"],
    ),
    t("Execution:Runtime/SuspiciousShellCreated", LOW, &[]),
    t("PrivilegeEscalation:Runtime/ElevationToRoot", MEDIUM, &[]),
    t(
        "Discovery:Runtime/SuspiciousCommand",
        LOW,
        &["commandLineExample"],
    ),
    t(
        "Persistence:Runtime/SuspiciousCommand",
        MEDIUM,
        &["commandLineExample"],
    ),
    t(
        "PrivilegeEscalation:Runtime/SuspiciousCommand",
        MEDIUM,
        &["commandLineExample"],
    ),
    t(
        "DefenseEvasion:Runtime/KernelModuleLoaded",
        HIGH,
        &["moduleName", "moduleFilePath", "moduleSha256"],
    ),
    t(
        "Execution:Runtime/MaliciousFileExecuted.Custom",
        HIGH,
        &["threatFilePath"],
    ),
    t(
        "Persistence:Runtime/SensitiveFileModified",
        MEDIUM,
        FILE_MODIFIED,
    ),
    t(
        "PrivilegeEscalation:Runtime/SensitiveFileModified",
        MEDIUM,
        FILE_MODIFIED,
    ),
    t(
        "DefenseEvasion:Runtime/SensitiveFileModified",
        MEDIUM,
        FILE_MODIFIED,
    ),
];

/// A runtime type by name.
pub fn runtime_type(name: &str) -> Option<&'static RuntimeType> {
    RUNTIME_TYPES.iter().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forty_six_distinct_types() {
        assert_eq!(RUNTIME_TYPES.len(), 46);
        let mut names: Vec<&str> = RUNTIME_TYPES.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 46);
        assert!(RUNTIME_TYPES.iter().all(|t| t.name.contains(":Runtime/")));
    }
}
