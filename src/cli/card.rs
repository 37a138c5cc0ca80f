//! `card …`: the chip encoder, for field engineers.

#[allow(unused_imports)]
use super::*;

/// `card …` actions.
#[derive(Debug, Subcommand)]
pub enum CardAction {
    /// Read the card as a terminal would and print its EMV data (PAN masked).
    Read {
        /// Reader name pattern.
        #[arg(long)]
        reader: String,
        /// Application AID (hex); Visa then Mastercard when absent.
        #[arg(long)]
        aid: Option<String>,
    },
    /// Personalize the card from a DGI set with a card product's transport keys.
    Perso {
        /// Reader name pattern.
        #[arg(long)]
        reader: String,
        /// DGI set JSON `{aid, dgis:[{dgi, data, encryption}]}`.
        #[arg(long)]
        dgis: PathBuf,
        /// Card product whose transport keys (from the key store) open the card.
        #[arg(long)]
        transport_key: String,
    },
    /// Issue a card from an order on the encoder only (pre-printed stock).
    Issue {
        /// Order file as the station receives it (D1 cardRequestInstant JSON with JWE).
        #[arg(long)]
        order: PathBuf,
        /// Reader name pattern.
        #[arg(long)]
        reader: String,
    },
}

pub(super) async fn encoder(pattern: &str) -> Result<station_pcsc::PcscEncoder, Failure> {
    let cfg =
        station_pcsc::ReaderConfig::new(pattern).map_err(|e| usage(format!("--reader: {e}")))?;
    let mut enc = station_pcsc::PcscEncoder::open(cfg)
        .await
        .map_err(|e| runtime(format!("encoder '{pattern}': {e}")))?;
    enc.wait_for_card(Duration::from_secs(15))
        .await
        .map_err(|e| runtime(format!("encoder '{pattern}': {e}")))?;
    Ok(enc)
}

pub(super) async fn card(explicit: Option<&Path>, action: CardAction) -> Outcome {
    use station_emv::terminal::{read_card, TerminalParams};
    match action {
        CardAction::Read { reader, aid } => {
            let aids: Vec<Vec<u8>> = match aid {
                Some(a) => vec![hex::decode(&a).map_err(|_| usage("--aid is not hex"))?],
                None => vec![
                    hex::decode("A0000000031010").expect("hex"),
                    hex::decode("A0000000041010").expect("hex"),
                ],
            };
            let mut enc = encoder(&reader).await?;
            let mut last = String::new();
            for aid in aids {
                match read_card(&mut enc, &aid, &TerminalParams::default()).await {
                    Ok(r) => {
                        print_readout(&r);
                        return Ok(());
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            Err(runtime(format!("reading the card: {last}")))
        }
        CardAction::Perso {
            reader,
            dgis,
            transport_key,
        } => {
            let cfg = load_config(explicit)?;
            let production = crate::agent::production_from_config(&cfg).map_err(usage)?;
            let t = production
                .keystore
                .transport_keys(&transport_key)
                .map_err(|e| usage(format!("--transport-key {transport_key}: {e}")))?;
            let text = std::fs::read_to_string(&dgis)
                .map_err(|e| usage(format!("{}: {e}", dgis.display())))?;
            let set = crate::order::card::ChipData::from_json_str(&text)
                .map_err(|e| usage(format!("{}: {}", dgis.display(), e.error)))?;
            let mut enc = encoder(&reader).await?;
            let report = production
                .write_chip(&mut enc, &set.aid, &set.dgis, &t)
                .await
                .map_err(|e| runtime(format!("[{}] {e}", e.code())))?;
            println!(
                "personalized: {} DGIs in {} STORE DATA, {} APDUs, {:.0} ms",
                report.dgi_count,
                report.store_data_count,
                report.apdu_count,
                report.duration.as_secs_f64() * 1000.0
            );
            Ok(())
        }
        CardAction::Issue { order, reader } => {
            let cfg = load_config(explicit)?;
            let production = crate::agent::production_from_config(&cfg).map_err(usage)?;
            let text = std::fs::read_to_string(&order)
                .map_err(|e| usage(format!("{}: {e}", order.display())))?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| usage(format!("{}: {e}", order.display())))?;
            let today = time::OffsetDateTime::now_utc().date();
            let job = production
                .prepare(&json, today)
                .map_err(|r| runtime(format!("order refused: {r}")))?;
            println!("order accepted for {}", job.masked_pan);
            let mut enc = encoder(&reader).await?;
            let apdus = production
                .personalize(&mut enc, &job)
                .await
                .map_err(|e| runtime(format!("CARD_PROD_EXCEPTION: [{}] {e}", e.code())))?;
            production
                .verify(&mut enc, &job)
                .await
                .map_err(|r| runtime(format!("{r}")))?;
            println!(
                "card {} personalized ({apdus} APDUs) and verified: ARQC good",
                job.masked_pan
            );
            Ok(())
        }
    }
}

pub(super) fn print_readout(r: &station_emv::terminal::CardReadout) {
    use station_emv::tlv;
    let tag = |t: u32| r.record_tag(t).map(|v| v.to_vec());
    let pan = tag(0x5A)
        .map(|v| {
            let digits: String = hex::encode_upper(v).trim_end_matches('F').to_string();
            station_emv::card_data::mask_digits(&digits)
        })
        .unwrap_or_else(|| "(none)".into());
    let label = tlv::find(&r.fci, 0x50)
        .ok()
        .flatten()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default();
    println!("AID            {}", hex::encode_upper(&r.aid));
    println!("label          {label}");
    println!("AIP            {}", hex::encode_upper(r.aip));
    println!("AFL            {}", hex::encode_upper(&r.afl));
    println!("PAN            {pan}");
    println!(
        "expiry (5F24)  {}",
        tag(0x5F24).map(hex::encode_upper).unwrap_or_default()
    );
    println!(
        "PSN (5F34)     {}",
        tag(0x5F34).map(hex::encode_upper).unwrap_or_default()
    );
    println!(
        "name (5F20)    {}",
        tag(0x5F20)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default()
    );
    if let Some(t2) = tag(0x57) {
        let s = hex::encode_upper(t2);
        let masked = match s.split_once('D') {
            Some((p, rest)) => format!(
                "{}D{}",
                station_emv::card_data::mask_digits(p),
                rest.get(..7).unwrap_or("")
            ),
            None => "(malformed)".into(),
        };
        println!("track 2 eq.    {masked}…");
    }
    println!(
        "PIN tries      {}",
        r.pin_try_counter
            .map(|c| c.to_string())
            .unwrap_or("?".into())
    );
    let g = &r.generate_ac;
    let kind = match g.cid & 0xC0 {
        0x80 => "ARQC",
        0x40 => "TC",
        _ => "AAC",
    };
    println!("ATC            {}", hex::encode_upper(g.atc));
    println!("cryptogram     {kind} {}", hex::encode_upper(g.ac));
    println!("IAD (9F10)     {}", hex::encode_upper(&g.iad));
}
