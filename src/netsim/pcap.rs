//! The packet capture: every packet between the guest and the simulated internet, raw IP
//! (LINKTYPE_RAW), written by the supervisor outside the sandbox.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;

use super::record::PcapStats;

/// Bytes kept of one packet (larger than the TUN's MTU, so every packet is whole).
const SNAPLEN: u32 = 65535;

/// A capture file with a size cap: past it, packets are counted, not written.
pub struct Capture {
    writer: PcapWriter<BufWriter<File>>,
    max_bytes: u64,
    written: u64,
    pub stats: PcapStats,
}

impl Capture {
    /// Creates the file with its header (a valid, empty capture from the start).
    pub fn create(path: &Path, max_bytes: u64) -> Result<Capture, String> {
        let file = File::create(path).map_err(|e| format!("create {}: {e}", path.display()))?;
        let header = PcapHeader {
            datalink: DataLink::RAW,
            snaplen: SNAPLEN,
            ..Default::default()
        };
        let writer = PcapWriter::with_header(BufWriter::new(file), header)
            .map_err(|e| format!("write pcap header: {e}"))?;
        Ok(Capture {
            writer,
            max_bytes,
            written: 24,
            stats: PcapStats::default(),
        })
    }

    /// Records one packet.
    pub fn packet(&mut self, data: &[u8]) {
        self.stats.packets += 1;
        self.stats.bytes += data.len() as u64;
        let size = 16 + data.len() as u64;
        if self.written + size > self.max_bytes {
            self.stats.packets_not_written += 1;
            return;
        }
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let packet = PcapPacket::new(since, data.len() as u32, data);
        if self.writer.write_packet(&packet).is_ok() {
            self.written += size;
        } else {
            self.stats.packets_not_written += 1;
        }
    }

    /// Flushes the file and returns what it holds.
    pub fn finish(self) -> PcapStats {
        if let Ok(w) = self.writer.into_writer().into_inner() {
            let _ = w.sync_all();
        }
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcap::PcapReader;

    #[test]
    fn capture_is_readable_and_capped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("network.pcap");
        let mut c = Capture::create(&path, 24 + 2 * (16 + 20)).unwrap();
        for i in 0..3u8 {
            c.packet(&[
                0x45, i, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
            ]);
        }
        let stats = c.finish();
        assert_eq!((stats.packets, stats.packets_not_written), (3, 1));
        let mut reader = PcapReader::new(File::open(&path).unwrap()).unwrap();
        assert_eq!(reader.header().datalink, DataLink::RAW);
        let mut n = 0;
        while let Some(p) = reader.next_packet() {
            assert_eq!(p.unwrap().data[1], n);
            n += 1;
        }
        assert_eq!(n, 2);
    }

    #[test]
    fn an_empty_capture_is_well_formed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pcap");
        Capture::create(&path, 1 << 20).unwrap().finish();
        let mut reader = PcapReader::new(File::open(&path).unwrap()).unwrap();
        assert!(reader.next_packet().is_none());
    }
}
