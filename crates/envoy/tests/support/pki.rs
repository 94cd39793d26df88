//! Per-world certificates (rcgen): a mesh CA, one SPIFFE URI SAN certificate per identity, and
//! a rogue CA whose certificates claim mesh identities.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kfp_mesh_envoy::TlsFiles;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

pub struct Pki {
    dir: PathBuf,
    mesh: CertifiedIssuer<'static, KeyPair>,
    rogue: CertifiedIssuer<'static, KeyPair>,
    pub ca_file: PathBuf,
    issued: Mutex<HashMap<(bool, String), TlsFiles>>,
}

fn ca(org: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::CommonName, format!("{org} root CA"));
    params.distinguished_name = dn;
    let key = KeyPair::generate().expect("CA key");
    CertifiedIssuer::self_signed(params, key).expect("self-signed CA")
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let mesh = ca("cluster.local");
        let rogue = ca("rogue");
        let ca_file = dir.join("mesh-ca.pem");
        std::fs::write(&ca_file, mesh.pem()).expect("write mesh CA");
        Pki {
            dir: dir.to_path_buf(),
            mesh,
            rogue,
            ca_file,
            issued: Mutex::new(HashMap::new()),
        }
    }

    /// A workload certificate for `principal` (`<td>/ns/<ns>/sa/<sa>`) signed by the mesh CA.
    pub fn identity(&self, principal: &str) -> TlsFiles {
        self.issue(principal, false)
    }

    /// A certificate claiming `principal`, signed by a CA the mesh does not trust.
    pub fn rogue_identity(&self, principal: &str) -> TlsFiles {
        self.issue(principal, true)
    }

    fn issue(&self, principal: &str, rogue: bool) -> TlsFiles {
        let mut issued = self.issued.lock().expect("pki lock");
        if let Some(f) = issued.get(&(rogue, principal.to_string())) {
            return f.clone();
        }
        let uri = format!("spiffe://{principal}");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
        params.subject_alt_names = vec![SanType::URI(
            uri.clone().try_into().expect("SPIFFE id is an IA5 string"),
        )];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "cluster.local");
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("leaf key");
        let issuer = if rogue { &self.rogue } else { &self.mesh };
        let cert = params.signed_by(&key, issuer).expect("sign leaf");
        let stem: String = principal
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let stem = if rogue { format!("rogue-{stem}") } else { stem };
        let files = TlsFiles {
            cert_chain: self.dir.join(format!("{stem}.crt")),
            private_key: self.dir.join(format!("{stem}.key")),
        };
        std::fs::write(&files.cert_chain, cert.pem()).expect("write cert");
        std::fs::write(&files.private_key, key.serialize_pem()).expect("write key");
        issued.insert((rogue, principal.to_string()), files.clone());
        files
    }
}
