//! TLS: the ClientHello tells the server name the sample asked for and its JA3 fingerprint.

use md5::{Digest, Md5};
use tls_parser::{
    parse_tls_client_hello_extensions, parse_tls_plaintext, TlsExtension, TlsExtensionType,
    TlsMessage, TlsMessageHandshake,
};

/// What a ClientHello says.
#[derive(Debug, Clone, PartialEq)]
pub struct Hello {
    pub sni: Option<String>,
    /// `SSLVersion,Ciphers,Extensions,EllipticCurves,EllipticCurvePointFormats`.
    pub ja3_string: String,
    /// md5 of `ja3_string`, hex.
    pub ja3: String,
}

/// Whether the first bytes of a stream are a TLS handshake record.
pub fn looks_like_tls(first: &[u8]) -> bool {
    first.len() >= 3 && first[0] == 0x16 && first[1] == 0x03
}

/// Parses a ClientHello from the first bytes of a stream; `None` until the whole record is
/// there or when it is not a ClientHello.
pub fn client_hello(data: &[u8]) -> Option<Hello> {
    let (_, record) = parse_tls_plaintext(data).ok()?;
    record.msg.iter().find_map(|m| match m {
        TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch)) => {
            let extensions = ch
                .ext
                .and_then(|e| parse_tls_client_hello_extensions(e).ok())
                .map(|(_, list)| list)
                .unwrap_or_default();
            let ciphers = ch.ciphers.iter().map(|c| c.0);
            Some(fingerprint(ch.version.0, ciphers, &extensions))
        }
        _ => None,
    })
}

/// GREASE values (RFC 8701) are left out of JA3.
fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

fn join(values: impl Iterator<Item = u16>) -> String {
    values
        .filter(|v| !is_grease(*v))
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("-")
}

fn fingerprint(
    version: u16,
    ciphers: impl Iterator<Item = u16>,
    extensions: &[TlsExtension<'_>],
) -> Hello {
    let mut sni = None;
    let mut curves = String::new();
    let mut formats = String::new();
    for ext in extensions {
        match ext {
            TlsExtension::SNI(names) => {
                sni = names
                    .first()
                    .map(|(_, n)| String::from_utf8_lossy(n).into_owned());
            }
            TlsExtension::EllipticCurves(groups) => curves = join(groups.iter().map(|g| g.0)),
            TlsExtension::EcPointFormats(list) => formats = join(list.iter().map(|f| *f as u16)),
            _ => {}
        }
    }
    let types = extensions.iter().map(|e| TlsExtensionType::from(e).0);
    let ja3_string = format!(
        "{version},{},{},{curves},{formats}",
        join(ciphers),
        join(types)
    );
    let ja3 = hex::encode(Md5::digest(ja3_string.as_bytes()));
    Hello {
        sni,
        ja3_string,
        ja3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello for `example.com` with two ciphers, a GREASE cipher and extensions
    /// SNI (0), supported groups (10: x25519, secp256r1, GREASE) and point formats (11: 0).
    fn hello() -> Vec<u8> {
        let name = b"example.com";
        let mut sni = vec![0, 0];
        let list_len = (name.len() + 3) as u16;
        sni.extend_from_slice(&(list_len + 2).to_be_bytes());
        sni.extend_from_slice(&list_len.to_be_bytes());
        sni.push(0);
        sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
        sni.extend_from_slice(name);
        let groups = [0u8, 10, 0, 8, 0, 6, 0, 29, 0, 23, 0x1a, 0x1a];
        let formats = [0u8, 11, 0, 2, 1, 0];
        let ext: Vec<u8> = [sni.as_slice(), &groups, &formats].concat();

        let mut body = vec![3, 3];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 6, 0x0a, 0x0a, 0x13, 0x01, 0xc0, 0x2f]);
        body.extend_from_slice(&[1, 0]); // compression: null
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);

        let mut hs = vec![1, 0];
        hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
        hs.extend_from_slice(&body);
        let mut record = vec![0x16, 3, 1];
        record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        record.extend_from_slice(&hs);
        record
    }

    #[test]
    fn sni_and_ja3_come_from_the_client_hello() {
        let bytes = hello();
        assert!(looks_like_tls(&bytes));
        let h = client_hello(&bytes).expect("a ClientHello");
        assert_eq!(h.sni.as_deref(), Some("example.com"));
        assert_eq!(h.ja3_string, "771,4865-49199,0-10-11,29-23,0");
        assert_eq!(
            h.ja3,
            hex::encode(Md5::digest(b"771,4865-49199,0-10-11,29-23,0"))
        );
    }

    #[test]
    fn a_partial_record_is_not_parsed_yet() {
        let bytes = hello();
        assert!(client_hello(&bytes[..bytes.len() - 5]).is_none());
        assert!(client_hello(b"GET / HTTP/1.1\r\n").is_none());
        assert!(!looks_like_tls(b"GET /"));
    }
}
